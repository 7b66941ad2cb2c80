"""What runs inside a Ray task on a node: a trial's loop, its outcome, its statistics."""
