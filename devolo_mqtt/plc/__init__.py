"""PLC networks: the monitor that asks one member per network, the rate matrix, link watching and
the network map."""
