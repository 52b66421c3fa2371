"""``sesshu``, the operator's command line: submit, provision, dead-letter tools."""
