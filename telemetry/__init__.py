"""What every yizhan package speaks: the wire contract, the station registry, common settings."""
