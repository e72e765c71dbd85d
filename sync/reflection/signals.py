"""Signals of a reflection: `reflected` is sent once its transaction (or the feed's) commits."""

from django.dispatch import Signal

# Sent with database_id after a reflection's transaction commits (applied or failed), and after
# the change feed's that records its events: what is now in the models is what a page that
# hears it will read.
reflected = Signal()
