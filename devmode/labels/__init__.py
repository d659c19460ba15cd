"""Your own labels: which look wrong, and the corrections a person accepts."""
