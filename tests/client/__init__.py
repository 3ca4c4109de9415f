"""Tests of the public client: its sans-I/O core, and the asyncio client end to end."""
