"""What people read: the one Jinja2 environment with its filters, and the label dictionary."""
