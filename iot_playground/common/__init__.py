"""What every tool shares: the stages of `.chalice/config.json`, exit codes, local endpoints."""
