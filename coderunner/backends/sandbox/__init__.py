"""What every sandbox box shares, whoever provides it: the host<->agent contract and the agent client."""
