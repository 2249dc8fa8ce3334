"""Núcleo compartido: modelo de eventos, catálogo, configuración y conexión con Kafka."""
