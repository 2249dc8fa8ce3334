"""La guía del integrador (docs/contrato.md y docs/contract.md) y sus ejemplos (docs/ejemplos/)
no se desvían del código:

- las dos guías nombran los mismos tipos de evento y los mismos motivos de rechazo, y son los
  del código (el enum del proto; los motivos que devuelven el validador, el procesador y la
  Ingesta, leídos de su fuente);
- cada ejemplo JSON de las guías es una línea de los archivos de ejemplo, de su tipo y válida;
- los archivos de ejemplo, pasados por la etapa por caso, la agregación y la publicación del
  procesador (sin Kafka) con un reloj fijo, dan los indicadores calculados a mano en la guía, y
  los mismos con un reloj años después: sus fechas no salen de las ventanas con el calendario;
- cada línea inválida recibe el motivo de `invalidos.esperado.tsv`.

La misma comprobación con el broker, `gpr publicar` y el procesador real:
tests/integracion/test_guia_ejemplos.py.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import re
from pathlib import Path

import pytest
from google.protobuf import json_format

from apoyo.guia import (SOLO_PROCESADOR, comprobar_indicadores, esperados, evento_de, eventos_validos,
                         lineas)
from conftest import AHORA, CATALOGO, RAIZ
from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import indicadores_pb2 as ipb
from servicios.comun import eventos as comun_eventos
from servicios.comun import topicos
from servicios.comun.catalogo import cargar_catalogo
from servicios.comun.eventos import clave_kafka, validar
from servicios.comun.metas import IndiceMetas
from servicios.ingesta import recepcion
from servicios.procesador import config as config_procesador
from servicios.procesador.dominio import etapa_casos
from servicios.procesador.dominio.agregacion import Agregacion
from servicios.procesador.dominio.etapa_casos import EtapaCasos, Registro, aplicar_escrituras
from servicios.procesador.dominio.reparto import particion_de_agencia
from servicios.procesador.metricas import MetricasProcesador
from servicios.procesador.publicacion import Publicacion

DOCS = RAIZ / "docs"
GUIAS = {"es": DOCS / "contrato.md", "en": DOCS / "contract.md"}
SECCION_TIPOS = {"es": "Tipos de evento", "en": "Event types"}
SECCION_MOTIVOS = {"es": "Motivos de rechazo", "en": "Rejection reasons"}
D = 86_400
PARTICIONES = 4


# ------------------------------------------------------------------ lo que dice cada guía


def _seccion(texto: str, titulo: str) -> str:
    """El texto de la sección `## titulo` hasta la siguiente de su nivel."""
    m = re.search(rf"^## {re.escape(titulo)}\n(.*?)(?=^## |\Z)", texto, re.S | re.M)
    assert m, f"falta la sección «## {titulo}»"
    return m.group(1)


def _tipos_de_la_guia(idioma: str) -> list[str]:
    seccion = _seccion(GUIAS[idioma].read_text(encoding="utf-8"), SECCION_TIPOS[idioma])
    return re.findall(r"^### `(TIPO_EVENTO_[A-Z_]+)`$", seccion, re.M)


def _motivos_de_la_guia(idioma: str) -> tuple[set[str], set[str]]:
    """(clases de motivo de la tabla: la primera columna; todos los motivos en `código` de la sección)."""
    seccion = _seccion(GUIAS[idioma].read_text(encoding="utf-8"), SECCION_MOTIVOS[idioma])
    filas = [linea for linea in seccion.splitlines() if linea.startswith("| `")]
    clases = {re.match(r"\| `([a-z_]+)", fila).group(1) for fila in filas}
    citados = set(re.findall(r"`([a-z_]+(?::[a-z_.]+)?)`", seccion))
    return clases, citados


def _ejemplos_json_de_la_guia(idioma: str) -> dict[str, list[dict]]:
    """Tipo (título de la subsección) → los bloques ```json que trae."""
    seccion = _seccion(GUIAS[idioma].read_text(encoding="utf-8"), SECCION_TIPOS[idioma])
    por_tipo = {}
    for parte in re.split(r"^### ", seccion, flags=re.M)[1:]:
        tipo = re.match(r"`([A-Z_]+)`", parte).group(1)
        por_tipo[tipo] = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", parte, re.S)]
    return por_tipo


# ------------------------------------------------------------------ lo que dice el código


def _arbol(modulo) -> ast.Module:
    return ast.parse(Path(inspect.getsourcefile(modulo)).read_text(encoding="utf-8"))


def _es_motivo(texto: str) -> bool:
    return re.fullmatch(r"[a-z_]+(:[a-z_.]+)?", texto) is not None


def _motivos_del_validador() -> set[str]:
    """Lo que devuelven las funciones del módulo de `validar` (dondequiera que viva): textos
    fijos, y el prefijo de los armados con f"clase:{campo}" como «clase:<campo>»."""
    modulo = inspect.getmodule(validar)
    motivos = set()
    for nodo in ast.walk(_arbol(modulo)):
        if not isinstance(nodo, ast.Return) or nodo.value is None:
            continue
        valor = nodo.value
        if isinstance(valor, ast.Constant) and isinstance(valor.value, str) and _es_motivo(valor.value):
            motivos.add(valor.value)
        elif isinstance(valor, ast.JoinedStr) and isinstance(valor.values[0], ast.Constant):
            prefijo = valor.values[0].value
            if re.fullmatch(r"[a-z_]+:", prefijo):
                motivos.add(prefijo + "<campo>")
    return motivos


def _constantes_de_texto(arbol: ast.Module, nombre=re.compile(r"[A-Z_]+")) -> dict[str, str]:
    constantes = {}
    for nodo in arbol.body:
        if (isinstance(nodo, ast.Assign) and len(nodo.targets) == 1 and isinstance(nodo.targets[0], ast.Name)
                and nombre.fullmatch(nodo.targets[0].id) and isinstance(nodo.value, ast.Constant)
                and isinstance(nodo.value.value, str)):
            constantes[nodo.targets[0].id] = nodo.value.value
    return constantes


def _prefijos(arbol: ast.Module, constantes: dict[str, str]) -> set[str]:
    """Las constantes que el módulo usa como prefijo de un motivo (f"{ERROR_INTERNO}:{clase}")."""
    prefijos = set()
    for nodo in ast.walk(arbol):
        if (isinstance(nodo, ast.JoinedStr) and len(nodo.values) >= 2
                and isinstance(nodo.values[0], ast.FormattedValue) and isinstance(nodo.values[0].value, ast.Name)
                and nodo.values[0].value.id in constantes and isinstance(nodo.values[1], ast.Constant)
                and str(nodo.values[1].value).startswith(":")):
            prefijos.add(constantes[nodo.values[0].value.id])
    return prefijos


def _motivos_de_constantes(arbol: ast.Module, nombre=re.compile(r"[A-Z_]+")) -> set[str]:
    """Las constantes de texto del módulo; las que usa como prefijo, como «prefijo:<…>»."""
    constantes = _constantes_de_texto(arbol, nombre)
    prefijos = _prefijos(arbol, constantes)
    return {f"{v}:<campo>" if v in prefijos else v for v in constantes.values()}


def _motivos_del_procesador() -> set[str]:
    """Los de la etapa por caso: sus constantes de motivo y los textos que pasa a `rechazar`."""
    arbol = _arbol(etapa_casos)
    motivos = _motivos_de_constantes(arbol)
    for nodo in ast.walk(arbol):
        if isinstance(nodo, ast.Call) and getattr(nodo.func, "id", "") == "rechazar" and len(nodo.args) >= 4:
            motivo = nodo.args[3]
            if isinstance(motivo, ast.Constant):
                motivos.add(motivo.value)
    motivos.add(comun_eventos.RegistroInvalido.motivo)
    return motivos


def _motivos_de_la_ingesta() -> set[str]:
    return _motivos_de_constantes(_arbol(recepcion), re.compile(r"MOTIVO_[A-Z_]+"))


def _motivos_del_codigo() -> set[str]:
    return _motivos_del_validador() | _motivos_del_procesador() | _motivos_de_la_ingesta()


def _clase(motivo: str) -> str:
    return motivo.split(":")[0]


# ------------------------------------------------------------------ tipos y motivos


def test_la_lectura_del_codigo_encuentra_los_motivos_conocidos():
    """Si la lectura de la fuente dejara de ver motivos, la prueba de abajo compararía conjuntos
    vacíos: algunos que sabemos que existen, de cada lugar."""
    assert {"campo_requerido:caso_id", "tiempo_futuro", "identificador_invalido:<campo>",
            "monto_invalido"} <= _motivos_del_validador()
    assert {"tardio", "caso_saturado", "caso_de_otro_servicio", "identidad_repetida", "lote_vacio",
            "error_interno:<campo>", "protobuf_invalido"} <= _motivos_del_procesador()
    assert {"evento_demasiado_grande", "protobuf_invalido"} <= _motivos_de_la_ingesta()


def test_las_dos_guias_nombran_los_tipos_de_evento_del_proto():
    del_proto = sorted(n for n in pb.TipoEvento.keys() if n != "TIPO_EVENTO_NO_ESPECIFICADO")
    assert sorted(_tipos_de_la_guia("es")) == del_proto
    assert sorted(_tipos_de_la_guia("en")) == del_proto
    # En el mismo orden, para que una se lea al lado de la otra.
    assert _tipos_de_la_guia("es") == _tipos_de_la_guia("en")


@pytest.mark.parametrize("idioma", ["es", "en"])
def test_cada_guia_explica_cada_motivo_del_codigo_y_ninguno_mas(idioma):
    codigo = _motivos_del_codigo()
    clases, citados = _motivos_de_la_guia(idioma)
    assert clases == {_clase(m) for m in codigo}, (
        f"docs/{GUIAS[idioma].name}: la tabla de motivos tiene de más {sorted(clases - {_clase(m) for m in codigo})} "
        f"y le faltan {sorted({_clase(m) for m in codigo} - clases)}")
    # Cada motivo fijo del código (p. ej. campo_requerido:caso_id) aparece tal cual en la sección.
    # (Una constante que es solo la clase de otros motivos, no.)
    fijos = {m for m in codigo if "<" not in m and not any(o.startswith(m + ":") for o in codigo)}
    assert fijos <= citados, f"docs/{GUIAS[idioma].name} no nombra {sorted(fijos - citados)}"


def test_las_dos_guias_tienen_las_mismas_filas_de_motivos():
    assert _motivos_de_la_guia("es") == _motivos_de_la_guia("en")


# ------------------------------------------------------------------ ejemplos de las guías


@pytest.mark.parametrize("idioma", ["es", "en"])
def test_cada_tipo_de_la_guia_trae_un_ejemplo_valido_tomado_de_los_archivos(idioma):
    catalogo = cargar_catalogo(CATALOGO)
    de_los_archivos = [e.SerializeToString(deterministic=True) for e in eventos_validos()]
    for tipo, bloques in _ejemplos_json_de_la_guia(idioma).items():
        assert len(bloques) == 1, (idioma, tipo, "un ejemplo JSON por tipo")
        evento = evento_de(bloques[0])
        assert pb.TipoEvento.Name(evento.tipo) == tipo, (idioma, tipo)
        assert validar(evento, catalogo, AHORA) is None, (idioma, tipo)
        assert evento.SerializeToString(deterministic=True) in de_los_archivos, (
            f"docs/{GUIAS[idioma].name}: el ejemplo de {tipo} no es una línea de docs/ejemplos/")


def test_las_dos_guias_traen_los_mismos_ejemplos():
    assert _ejemplos_json_de_la_guia("es") == _ejemplos_json_de_la_guia("en")


# ------------------------------------------------------------------ archivos de ejemplo


def test_el_archivo_de_esperados_cubre_cada_linea_invalida():
    filas = esperados()
    assert [int(e["linea"]) for e in filas] == list(range(1, len(lineas("invalidos.jsonl")) + 1))
    assert {e["esquema"] for e in filas} <= {"falla", "pasa"}
    # Cada motivo esperado es uno del código (o el de una línea que `gpr publicar` no lee).
    clases = {_clase(m) for m in _motivos_del_codigo()} | {"json_invalido"}
    assert {_clase(e["motivo"]) for e in filas} <= clases


def test_los_ejemplos_validos_pasan_el_validador_con_el_reloj_fijo_y_años_despues():
    catalogo = cargar_catalogo(CATALOGO)
    for ahora in (AHORA, AHORA + 20 * 365 * D):
        for evento in eventos_validos():
            assert validar(evento, catalogo, ahora) is None, (evento.evento_id, ahora)


class _Procesador:
    """La etapa por caso, la agregación y la publicación del procesador sobre dicts, con los
    eventos en la partición de su agencia, como los deja el reparto (la tardanza y las
    identidades se juzgan por partición), y un reloj fijo."""

    def __init__(self, ahora: float):
        catalogo = cargar_catalogo(CATALOGO)
        self.casos: dict[bytes, bytes] = {}
        self.agregacion = Agregacion({}, {}, {}, catalogo, 7 * D)
        self.etapa = EtapaCasos(catalogo, 7 * D, lambda: ahora)
        cfg = config_procesador.leer({"GPR_KAFKA_BOOTSTRAP": "k:9092"})
        self.publicacion = Publicacion(cfg, IndiceMetas([]), MetricasProcesador(), self.agregacion, lambda: ahora)
        self.offsets = [0] * PARTICIONES
        self.rechazos: list[tuple[pb.Evento, str]] = []

    def procesar(self, eventos: list[pb.Evento]) -> None:
        por_particion: dict[int, list[Registro]] = {}
        for evento in eventos:
            clave = clave_kafka(evento)
            p = particion_de_agencia(evento.agencia_id, PARTICIONES)
            por_particion.setdefault(p, []).append(Registro(p, self.offsets[p], clave, evento.SerializeToString()))
            self.offsets[p] += 1
        for registros in por_particion.values():
            salida = self.etapa.procesar(registros, self.casos)
            aplicar_escrituras(self.casos, salida.escrituras)
            self.rechazos += [(pb.Evento.FromString(r.valor), r.motivo) for r in salida.rechazos]
            self.publicacion.marcar(self.agregacion.aplicar_lotes(salida.lotes))

    def indicadores(self) -> dict[str, ipb.Indicador]:
        publicado = {}

        async def enviar(topico: str, clave: bytes, valor: bytes) -> None:
            if topico == topicos.INDICADORES:
                publicado[clave.decode()] = ipb.Indicador.FromString(valor)

        asyncio.run(self.publicacion.publicar(lambda: False, enviar))
        return publicado


@pytest.mark.parametrize("ahora", [AHORA, AHORA + 20 * 365 * D], ids=["reloj-fijo", "veinte-años-despues"])
def test_los_ejemplos_dan_los_indicadores_calculados_a_mano(ahora):
    procesador = _Procesador(ahora)
    procesador.procesar(eventos_validos())
    assert procesador.rechazos == []
    assert comprobar_indicadores(procesador.indicadores()) == []


def test_cada_linea_invalida_recibe_su_motivo_del_procesador():
    procesador = _Procesador(AHORA)
    procesador.procesar(eventos_validos())
    leibles = []
    for esperado, linea in zip(esperados(), lineas("invalidos.jsonl")):
        if esperado["motivo"] == "json_invalido":
            with pytest.raises(json_format.ParseError):
                evento_de(linea)
            continue
        leibles.append((evento_de(linea), esperado["motivo"]))
    procesador.procesar([evento for evento, _ in leibles])
    obtenidos = {e.SerializeToString(deterministic=True): m for e, m in procesador.rechazos}
    assert len(obtenidos) == len(procesador.rechazos) == len(leibles)
    for evento, motivo in leibles:
        assert obtenidos.get(evento.SerializeToString(deterministic=True)) == motivo, (evento.evento_id, motivo)
    # Los inválidos no tocaron los indicadores.
    assert comprobar_indicadores(procesador.indicadores()) == []


def test_el_validador_solo_deja_pasar_lo_que_juzga_el_procesador():
    catalogo = cargar_catalogo(CATALOGO)
    for esperado, linea in zip(esperados(), lineas("invalidos.jsonl")):
        if esperado["motivo"] == "json_invalido":
            continue
        motivo = validar(evento_de(linea), catalogo, AHORA)
        assert motivo == (None if esperado["motivo"] in SOLO_PROCESADOR else esperado["motivo"]), esperado
