"""What nodes there are: the Ray session, the node inventory, local test clusters."""
