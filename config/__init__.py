"""The example configuration and systemd unit, shipped inside the agent as agent.example_config."""
