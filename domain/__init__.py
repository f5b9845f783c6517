"""Business rules, one module per area. Plain Python: never imports dramatiq, peewee or an
HTTP client; what it needs from the outside (clock, storage, HTTP) comes in as arguments."""
