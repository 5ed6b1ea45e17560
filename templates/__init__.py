"""Jinja2 templates of reports and messages, shipped inside the agent as agent.templates."""
