"""E-mail itself: addresses, MIME, DKIM, the SMTP and IMAP clients, parsing of returned mail."""
