"""What a tenant, an account and a message are, and the rules about them: no AWS, no I/O."""
