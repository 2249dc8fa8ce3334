"""Tokens de lectura de la consulta sin red: el archivo (errores con archivo, línea y campo),
el metadato `authorization`, la orden que crea tokens y el archivo de ejemplo de compose."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import CATALOGO, RAIZ
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.yaml_lineas import ArchivoInvalido
from servicios.comun.config import ConfiguracionInvalida
from servicios.consulta import config as config_consulta
from servicios.consulta.acceso import (ABIERTO, Alcance, NoAutenticado, Tokens, alcance_de_metadatos, cargar_tokens,
                                       hash_token, token_demo, tokens_demo_aceptados)

H1, H2 = "a" * 64, "b" * 64


def _cargar(tmp_path, texto):
    archivo = tmp_path / "tokens.yaml"
    archivo.write_text(texto)
    return archivo, cargar_tokens(archivo, cargar_catalogo(CATALOGO))


def _errores(tmp_path, texto):
    with pytest.raises(ArchivoInvalido) as error:
        _cargar(tmp_path, texto)
    return [(e.linea, e.campo, e.mensaje) for e in error.value.errores]


def test_archivo_de_tokens_valido(tmp_path):
    _, tokens = _cargar(tmp_path, f"tokens:\n  - {{token_sha256: {H1}, agencias: ['*']}}\n"
                                  f"  - {{token_sha256: {H2}, agencias: [reniec, sunarp], descripcion: x}}\n")
    assert len(tokens) == 2
    assert tokens.por_hash[H1].agencias is None
    assert tokens.por_hash[H2].agencias == {"reniec", "sunarp"}


def test_errores_del_archivo_nombran_linea_y_campo(tmp_path):
    assert _errores(tmp_path, f"tokens:\n  - token_sha256: {H1}\n    agencias: [reniec, inventada]\n") == [
        (3, "tokens[0].agencias[1]", "agencia desconocida 'inventada' (no está en el catálogo)")]
    assert _errores(tmp_path, f"tokens:\n  - token_sha256: {H1}\n    agencias: ['*', reniec]\n") == [
        (3, "tokens[0].agencias[0]", "'*' (todas las agencias) va solo, sin otras agencias")]
    assert _errores(tmp_path, f"tokens:\n  - {{token_sha256: {H1}, agencias: [reniec]}}\n"
                              f"  - {{token_sha256: {H1}, agencias: [sunarp]}}\n") == [
        (3, "tokens[1].token_sha256", "token repetido")]
    errores = _errores(tmp_path, "tokens:\n  - token_sha256: gpr_lectura_en_claro\n    agencias: []\n    otra: 1\n")
    assert [(linea, campo) for linea, campo, _ in errores] == [
        (2, "tokens[0].token_sha256"), (3, "tokens[0].agencias"), (4, "tokens[0].otra")]
    assert _errores(tmp_path, "tokens: []\n")[0][1] == "tokens"


def test_metadato_authorization():
    tokens = Tokens({hash_token("secreto"): Alcance(frozenset({"reniec"}))})
    assert alcance_de_metadatos(None, []) is ABIERTO
    assert alcance_de_metadatos(tokens, [("authorization", "Bearer secreto")]).agencias == {"reniec"}
    assert alcance_de_metadatos(tokens, [("x", "y"), ("authorization", b"bearer  secreto ")]).permite("reniec")
    for metadatos in ([], [("authorization", "")], [("authorization", "Bearer")], [("authorization", "Token secreto")],
                      [("authorization", "Bearer otro")]):
        with pytest.raises(NoAutenticado) as error:
            alcance_de_metadatos(tokens, metadatos)
        assert str(error.value).startswith("authorization:") and "secreto" not in str(error.value)


def test_orden_nuevo_crea_un_token_que_el_archivo_acepta(tmp_path):
    salida = subprocess.run([sys.executable, "-m", "servicios.consulta.acceso", "nuevo", "--agencias", "reniec,minsa",
                             "--descripcion", 'tablero "interno"', "--catalogo", str(CATALOGO)],
                            capture_output=True, text=True, cwd=RAIZ, timeout=60)
    assert salida.returncode == 0, salida.stderr
    lineas = salida.stdout.splitlines()
    token = next(l.strip() for l in lineas if l.strip().startswith("gpr_lectura_"))
    entrada = next(l for l in lineas if l.startswith("  - {token_sha256:"))
    assert token not in entrada
    _, tokens = _cargar(tmp_path, "tokens:\n" + entrada + "\n")
    alcance = tokens.alcance_de(token)
    assert alcance.agencias == {"reniec", "minsa"} and alcance.descripcion == 'tablero "interno"'
    mala = subprocess.run([sys.executable, "-m", "servicios.consulta.acceso", "nuevo", "--agencias", "inventada",
                           "--catalogo", str(CATALOGO)], capture_output=True, text=True, cwd=RAIZ, timeout=60)
    assert mala.returncode == 2 and "inventada" in mala.stderr


def test_el_ejemplo_de_compose_solo_tiene_tokens_de_demostracion():
    tokens = cargar_tokens(RAIZ / "despliegue" / "consulta" / "tokens.ejemplo.yaml", cargar_catalogo(CATALOGO))
    assert tokens_demo_aceptados(tokens) == ["portal", "reniec"]
    assert len(tokens) == 2
    assert tokens.alcance_de(token_demo("portal")).agencias is None
    assert tokens.alcance_de(token_demo("reniec")).agencias == {"reniec"}


def test_configuracion_de_tls_y_salud():
    base = {"GPR_KAFKA_BOOTSTRAP": "k:9092"}
    cfg = config_consulta.leer(base)
    assert (cfg.tls_certificado, cfg.tokens, cfg.salud_puerto, cfg.grpc_host) == (None, None, 0, "0.0.0.0")
    for entorno, variable in (({"GPR_CONSULTA_TLS_CERT": str(CATALOGO)}, "GPR_CONSULTA_TLS_KEY"),
                              ({"GPR_CONSULTA_TLS_KEY": str(CATALOGO)}, "GPR_CONSULTA_TLS_CERT"),
                              ({"GPR_CONSULTA_TLS_CERT": str(CATALOGO), "GPR_CONSULTA_TLS_KEY": str(CATALOGO)},
                               "GPR_CONSULTA_TLS_CERT"),
                              ({"GPR_CONSULTA_SALUD_PUERTO": "70000"}, "GPR_CONSULTA_SALUD_PUERTO"),
                              ({"GPR_CONSULTA_PLAZO_KAFKA": "0s"}, "GPR_CONSULTA_PLAZO_KAFKA")):
        with pytest.raises(ConfiguracionInvalida) as error:
            config_consulta.leer({**base, **entorno})
        assert variable in str(error.value)
