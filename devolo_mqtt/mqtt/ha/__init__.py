"""Home Assistant discovery: the pure config builders and the publisher with its ledger."""
