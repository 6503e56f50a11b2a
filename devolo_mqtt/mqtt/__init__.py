"""MQTT: the session, the topics, what comes in (router, requests, instance guard) and what goes out
(publisher, inventory), and Home Assistant discovery (`ha/`)."""
