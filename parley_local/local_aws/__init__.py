"""The AWS services the functions call, run locally: moto's server, and the template's tables in it."""
