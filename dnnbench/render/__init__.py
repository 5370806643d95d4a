"""Rows shown to people: terminal tables and layout, progress, plots and the HTML report."""
