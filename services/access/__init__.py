"""Who may see what: people and their logins, machine tokens, and the scope rules every read
goes through (a supervisor's assignment window, a district, an institution)."""
