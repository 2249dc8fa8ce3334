"""Ingesta gRPC: los sistemas de agencia sin cliente de Kafka publican eventos con su token."""
