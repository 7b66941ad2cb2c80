"""One campaign: plan, dispatch, record, verdict."""
