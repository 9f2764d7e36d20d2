"""What ships: the installable package, how the app is handed its services, the run command."""
