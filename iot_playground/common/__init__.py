"""What every tool shares: the stages of .chalice/config.json, the terminal, local endpoints, topics."""
