"""El procesador real como subproceso en las pruebas de integración, y la espera a que lo que
publica iguale a la implementación de referencia."""

from __future__ import annotations

import time

import pytest

from apoyo import referencia
from apoyo.comparar import diferencias
from apoyo.consulta import ClienteConsulta
from apoyo.kafka import observado_desde_indicadores

PARTICIONES = 4


def esperar_igual_a_referencia(bootstrap, catalogo, eventos, procesos, limite_s=240):
    """Espera a que *cada* indicador de cada ventana servido por gRPC iguale a la referencia."""
    cliente = ClienteConsulta(bootstrap)
    esperado = {a: referencia.indicadores(eventos, catalogo, a) for a in catalogo.agencias}
    errores = {}
    fin = time.monotonic() + limite_s
    try:
        cliente.esperar_al_dia()
        while time.monotonic() < fin:
            errores = {}
            for agencia in catalogo.agencias:
                observado, cuellos = observado_desde_indicadores(cliente.listar(agencia))
                e = diferencias(observado, esperado[agencia], cuellos, eventos, catalogo, agencia)
                rangos = [k for k, v in esperado[agencia].items() if k[1] == "_rango" and observado.get(k) != v]
                if e or rangos:
                    errores[agencia] = (len(e), e[:4], rangos[:2])
            if not errores:
                return
            time.sleep(1)
    finally:
        cliente.cerrar()
    pytest.fail(f"los indicadores no igualaron a la referencia: {errores}\n"
                f"{procesos.registro('procesador')[-4000:]}")


def lanzar_procesador(procesos, bootstrap, tmp_path, nombre="procesador", almacen="rocksdb", **extra):
    return procesos.lanzar("servicios.procesador", {
        "GPR_KAFKA_BOOTSTRAP": bootstrap, "GPR_PARTICIONES": str(PARTICIONES), "GPR_ALMACEN": almacen,
        "GPR_DIRECTORIO_DATOS": str(tmp_path / nombre), "GPR_METRICAS_PUERTO": "0",
        "GPR_INTERVALO_PUBLICACION": "0.5", **extra,
    }, nombre=nombre)
