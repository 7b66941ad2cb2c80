"""What people see: tables, the HTML report, charts (from stored rows)."""
