"""Results: summaries, tables, HTML reports with plots (and, for the live plane, metrics and alerts)."""
