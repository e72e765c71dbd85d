"""Signals of a reflection: `reflected` is sent once its transaction has committed."""

from django.dispatch import Signal

# Sent with database_id after a reflection's transaction commits (applied or failed): what is
# now in the models is what a page that hears it will read.
reflected = Signal()
