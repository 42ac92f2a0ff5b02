"""Built-in example jobs an agent can run (``command: builtin:mlp`` in a job spec)."""
