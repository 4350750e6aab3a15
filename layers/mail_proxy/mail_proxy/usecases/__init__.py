"""What the application does: submission, delivery, scheduling, reports, tenants, accounts, feedback."""
