"""The only code that knows Twilio's words: its HTTP API and SDK (client), its error codes and what
they mean for a retry (errors), and its status callbacks and their signature (callbacks). The rest of
the service speaks the domain's words (deliveries.status, Attempt outcomes).

This file imports nothing, so that reading the error table (errors) never loads the Twilio SDK.
"""
