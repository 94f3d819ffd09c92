"""SMS for alerts: GSM-7/UCS-2 encoding, SMS-SUBMIT PDUs and a GSM modem driver.

Lives under ``hamlet`` (no server imports) so a gateway sends through its own modem with the
same code the server uses.
"""
