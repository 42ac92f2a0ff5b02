"""The decision loop (observe -> decide -> act) and the ports both worlds implement."""
