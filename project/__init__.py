"""Django project of dbsync: settings, URLs and the WSGI entry point."""
