"""The Monitor: scoring dated text with the active models, trends by period, ticker and topic,
scoring jobs, and alert rules with their events."""
