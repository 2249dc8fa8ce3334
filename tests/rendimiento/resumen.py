"""Resumen de `make bench`: de resultados/bench.json a resultados/bench.md y bench.png.

Pone cada medida junto a su línea base y a la meta del issue #6, y marca si se cumple. Se
llama al terminar la sesión de bancos; también a mano, para rehacer el resumen de un JSON:

    .venv/bin/python tests/rendimiento/resumen.py [resultados/bench.json]
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

GIB = 1 << 30
MIB = 1 << 20


@dataclass(frozen=True)
class Meta:
    nombre: str
    objetivo: str
    medido: str
    cumple: bool | None  # None: no se pudo medir


def _get(datos: dict, *claves, defecto=None):
    for clave in claves:
        if not isinstance(datos, dict) or clave not in datos:
            return defecto
        datos = datos[clave]
    return datos


def _num(x: float | None, decimales: int = 0) -> str:
    if x is None:
        return "—"
    return f"{x:,.{decimales}f}".replace(",", " ")


# Las configuraciones del banco de caudal, en el orden del gráfico y de las tablas.
CONFIGURACIONES_CAUDAL = (("crudo", "consumo crudo (aiokafka)"), ("piso_faust", "piso de faust"),
                          ("piso_faust_lotes", "piso de faust con entrega por lotes"),
                          ("procesador_1", "procesador ×1"), ("procesador_2", "procesador ×2"))


def _razon(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def _estimado(medida: dict | None) -> str:
    return "" if not medida or medida.get("completo", True) else " (estimado al tope)"


def metas(bancos: dict) -> list[Meta]:
    """Cada meta del issue #6 con lo medido en esta ejecución."""
    resultado = []
    caudal = bancos.get("caudal", {})

    uno = _get(caudal, "evento", "procesador_1")
    piso = _get(caudal, "evento", "piso_faust", "eventos_s")
    r = _razon(_get(uno or {}, "eventos_s"), piso)
    # La meta es frente al piso de faust sin tocar; frente al piso con la entrega por lotes que
    # usa el procesador se informa aparte (cuánto de la razón viene de esa entrega).
    por_lotes = _get(caudal, "evento", "piso_faust_lotes", "eventos_s")
    frente_al_de_lotes = (f"; frente al piso con la misma entrega por lotes ({_num(por_lotes)} eventos/s): "
                          f"{_pct(_razon(_get(uno or {}, 'eventos_s'), por_lotes))}" if por_lotes else "")
    resultado.append(Meta("Caudal, un evento por registro", "≥ 80 % del piso de faust",
                          f"{_pct(r)} ({_num(_get(uno or {}, 'eventos_s'))} / {_num(piso)} eventos/s){_estimado(uno)}"
                          + frente_al_de_lotes,
                          None if r is None else r >= 0.8))

    uno_l = _get(caudal, "lote", "procesador_1")
    crudo = _get(caudal, "lote", "crudo", "eventos_s")
    r = _razon(_get(uno_l or {}, "eventos_s"), crudo)
    resultado.append(Meta("Caudal en lotes", "≥ 50 % del consumo crudo",
                          f"{_pct(r)} ({_num(_get(uno_l or {}, 'eventos_s'))} / {_num(crudo)} eventos/s){_estimado(uno_l)}",
                          None if r is None else r >= 0.5))
    v = _get(uno_l or {}, "eventos_s")
    resultado.append(Meta("Caudal en lotes, barra provisional", "≥ 20 000 eventos/s por trabajador",
                          f"{_num(v)} eventos/s{_estimado(uno_l)}", None if v is None else v >= 20_000))

    for formato, nombre in (("evento", "un evento por registro"), ("lote", "lotes")):
        dos = _get(caudal, formato, "procesador_2", "eventos_s")
        un = _get(caudal, formato, "procesador_1", "eventos_s")
        r = _razon(dos, un)
        estimado = _estimado(_get(caudal, formato, "procesador_1")) or _estimado(_get(caudal, formato, "procesador_2"))
        cpu = _razon(_get(caudal, formato, "procesador_2", "cpu_us_evento"),
                     _get(caudal, formato, "procesador_1", "cpu_us_evento"))
        ocupada = _get(caudal, formato, "procesador_2", "cpu", "nucleos", "maquina")
        detalle = ("" if cpu is None else
                   f"; CPU por evento {cpu:.2f}× la de uno, máquina con {_num(ocupada, 2)} de "
                   f"{_get(caudal, formato, 'procesador_2', 'cpu', 'nucleos_maquina', defecto='—')} núcleos ocupados")
        resultado.append(Meta(f"Escalado a 2 trabajadores ({nombre})", "≥ 1,7× uno",
                              "—" if r is None else f"{r:.2f}× ({_num(dos)} / {_num(un)} eventos/s){estimado}{detalle}",
                              None if r is None else r >= 1.7))

    frescura = bancos.get("frescura")
    if frescura:
        p99 = frescura.get("p99_s")
        tasa_ok = frescura.get("tasa", 0) >= frescura.get("tasa_objetivo", 2000)
        resultado.append(Meta("Frescura p99", f"≤ 1 s a {_num(frescura.get('tasa_objetivo'))} eventos/s",
                              f"{_num(p99, 2)} s a {_num(frescura.get('tasa'))} eventos/s ({frescura.get('formato')})"
                              + ("" if frescura.get("sostenida", True) else ", carga no sostenida"),
                              None if p99 is None else (p99 <= 1.0 and tasa_ok and frescura.get("sostenida", True))))
    else:
        resultado.append(Meta("Frescura p99", "≤ 1 s a 2 000 eventos/s", "—", None))

    consulta = bancos.get("consulta")
    p99 = _get(consulta or {}, "proyecto", "abierto", "p99_ms")
    tasa = _get(consulta or {}, "proyecto", "abierto", "tasa")
    resultado.append(Meta("Consulta, latencia", "p99 ≤ 5 ms a 1 000 peticiones/s",
                          f"p99 {_num(p99, 2)} ms a {_num(tasa)} peticiones/s",
                          None if p99 is None else p99 <= 5.0))
    rps = _get(consulta or {}, "proyecto", "cerrado", "rps")
    desnudo = _get(consulta or {}, "desnudo", "cerrado", "rps")
    r = _razon(rps, desnudo)
    resultado.append(Meta("Consulta, peticiones/s", "≥ 60 % del servidor gRPC desnudo",
                          f"{_pct(r)} ({_num(rps)} / {_num(desnudo)} peticiones/s)", None if r is None else r >= 0.6))

    memoria = bancos.get("memoria", {})
    niveles = sorted((int(k) for k in memoria if k.isdigit()), reverse=True)
    if niveles:
        mayor = memoria[str(niveles[0])]
        for proceso in ("procesador", "consulta"):
            rss = _get(mayor, proceso, "rss_bytes")
            estimado = _get(mayor, proceso, "rss_estimado_bytes")
            if mayor.get("completo"):
                texto, cumple = f"{_num(rss / MIB if rss else None)} MiB", None if rss is None else rss <= GIB
            else:
                texto = (f"{_num(rss / MIB if rss else None)} MiB al tope, con {_num(mayor.get('series'))} de "
                         f"~{_num(mayor.get('series_esperadas'))} series; estimado completo: "
                         f"{_num(estimado / MIB if estimado else None)} MiB")
                cumple = False if (rss and rss > GIB) or (estimado and estimado > GIB) else None
            nombre = "Memoria del procesador" if proceso == "procesador" else "Memoria de la consulta"
            resultado.append(Meta(nombre, f"≤ 1 GiB con {_num(niveles[0])} pares", texto, cumple))
    lin = memoria.get("linealidad")
    if lin:
        partes = [f"{p}: {_num(lin.get(p), 2)}×" if lin.get(p) is not None else f"{p}: — (nivel mayor incompleto)"
                  for p in ("procesador", "consulta")]
        medidos = [lin[p] for p in ("procesador", "consulta") if lin.get(p) is not None]
        cumple = None if not medidos else (False if max(medidos) > 1.25 else (True if lin.get("completa") else None))
        resultado.append(Meta("Memoria lineal", "coste del nivel mayor ≤ 1,25× el del menor",
                              ", ".join(partes) + f" (por {lin.get('base', 'par')})", cumple))
    else:
        resultado.append(Meta("Memoria", "≤ 1 GiB con 10 000 pares, lineal", "—", None))

    portal = bancos.get("portal")
    if portal:
        p99 = _get(portal, "portal", "abierto", "p99_ms")
        resultado.append(Meta("Portal, latencia de páginas", f"p99 a {_num(portal.get('tasa_objetivo'))} peticiones/s",
                              f"p99 {_num(p99, 1)} ms, p50 {_num(_get(portal, 'portal', 'abierto', 'p50_ms'), 1)} ms "
                              f"(página constante: p99 {_num(_get(portal, 'constante', 'abierto', 'p99_ms'), 1)} ms)",
                              None))
        r = portal.get("razon_rps")
        resultado.append(Meta("Portal, peticiones/s", "≥ 50 % del mismo framework con una página constante",
                              f"{_pct(r)} ({_num(_get(portal, 'portal', 'cerrado', 'rps'))} / "
                              f"{_num(_get(portal, 'constante', 'cerrado', 'rps'))} peticiones/s)",
                              None if r is None else r >= 0.5))
        rpc = portal.get("rpc", {})
        resultado.append(Meta("Portal, llamadas gRPC", "≤ una por serie y periodo de caché",
                              f"{_num(rpc.get('llamadas_por_1000_vistas'), 2)} por 1 000 vistas "
                              f"({_num(rpc.get('llamadas'))} llamadas, tope {_num(rpc.get('tope_una_por_serie_y_periodo'))})",
                              None if not rpc else rpc.get("llamadas", 0) <= rpc.get("tope_una_por_serie_y_periodo", 0)))

    arranque = _get(bancos, "arranque", "frio_mediana_s")
    resultado.append(Meta("Arranque", "≤ 10 s", f"{_num(arranque, 1)} s (mediana en frío)",
                          None if arranque is None else arranque <= 10.0))
    return resultado


def _marca(cumple: bool | None) -> str:
    return {True: "✅ cumple", False: "❌ no cumple", None: "— sin medir"}[cumple]


def dibujar(bancos: dict, ruta: Path) -> bool:
    """Gráfico de barras del caudal por configuración (escala logarítmica)."""
    caudal = bancos.get("caudal")
    if not caudal:
        return False
    try:
        import matplotlib
    except ImportError:
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configuraciones = CONFIGURACIONES_CAUDAL
    formatos = [("evento", "un Evento por registro", "#4c72b0"), ("lote", "LoteEventos", "#dd8452")]
    figura, ejes = plt.subplots(figsize=(9, 4.8))
    alto = 0.38
    for j, (formato, etiqueta, color) in enumerate(formatos):
        valores, estimados = [], []
        for clave, _ in configuraciones:
            medida = _get(caudal, formato, clave) or {}
            valores.append(medida.get("eventos_s") or 0)
            estimados.append(medida.get("completo") is False)
        posiciones = [i + (j - 0.5) * alto for i in range(len(configuraciones))]
        barras = ejes.barh(posiciones, valores, height=alto, color=color, label=etiqueta)
        for barra, valor, estimado in zip(barras, valores, estimados):
            if valor:
                ejes.text(valor * 1.08, barra.get_y() + alto / 2, f"{valor:,.0f}".replace(",", " ") + ("*" if estimado else ""),
                          va="center", fontsize=8)
    ejes.set_yticks(range(len(configuraciones)), [nombre for _, nombre in configuraciones])
    ejes.set_xscale("log")
    ejes.set_xlabel("eventos/s (escala logarítmica)")
    ejes.set_ylim(len(configuraciones) - 0.4, -0.9)
    ejes.axvline(20_000, color="grey", linestyle="--", linewidth=0.8)
    ejes.text(20_000, -0.65, " meta provisional en lotes: 20 000/s", fontsize=7, color="grey", va="center")
    ejes.set_title("Caudal por configuración (misma máquina, mismo broker, mismos eventos)")
    ejes.legend(loc="lower right", fontsize=8)
    ejes.margins(x=0.2)
    if any(_get(caudal, f, c, "completo") is False for f, _, _ in formatos for c, _ in configuraciones):
        ejes.text(0.01, 0.01, "* no terminó antes del tope: estimado por lo ya publicado", transform=ejes.transAxes,
                  fontsize=7, color="grey")
    figura.tight_layout()
    figura.savefig(ruta, dpi=120)
    plt.close(figura)
    return True


def _tabla(filas: list[list[str]], cabecera: list[str]) -> list[str]:
    return ["| " + " | ".join(cabecera) + " |", "|" + "---|" * len(cabecera)] + ["| " + " | ".join(f) + " |" for f in filas]


def markdown(datos: dict, grafico: str | None) -> str:
    bancos = datos.get("bancos", {})
    maquina = datos.get("maquina", {})
    lineas = [
        "# GpR Monitor — resultados de `make bench`",
        "",
        f"- Fecha: {datos.get('fecha', '—')} (duración {_num(datos.get('duracion_s'))} s)",
        f"- Máquina: {maquina.get('nproc', '—')} núcleos, {maquina.get('cpu', '—')}, "
        f"{_num((maquina.get('memoria_bytes') or 0) / GIB, 1)} GiB; {maquina.get('sistema', '')}; Python {maquina.get('python', '')}",
        f"- Broker: {maquina.get('broker', '—')}",
        "",
        "Cada medida se compara con su línea base medida en la misma ejecución, con el mismo broker y",
        "los mismos eventos generados: en estas máquinas compartidas las cifras absolutas derivan, las",
        "razones mucho menos. Los bancos informan; no fallan por lentitud (sí por errores de corrección).",
        "",
        "## Metas del issue #6",
        "",
    ]
    lineas += _tabla([[m.nombre, m.objetivo, m.medido, _marca(m.cumple)] for m in metas(bancos)],
                     ["Meta", "Objetivo", "Medido", "Estado"])

    caudal = bancos.get("caudal")
    if caudal:
        lineas += ["", "## 1. Caudal", ""]
        if grafico:
            lineas += [f"![Caudal por configuración]({grafico})", ""]
        filas = []
        for formato in ("evento", "lote"):
            medida = caudal.get(formato)
            if not medida:
                continue
            for clave, nombre in CONFIGURACIONES_CAUDAL:
                m = medida.get(clave)
                if not m:
                    continue
                avisos = m.get("avisos") or {}
                filas.append([formato, nombre, _num(m.get("eventos_s")), _num(m.get("registros_s")),
                              _num(m.get("segundos"), 1), _num(m.get("arranque_s"), 1),
                              "sí" if m.get("completo", True) else f"no: {_num(m.get('eventos'))} de {_num(medida.get('eventos'))}",
                              ", ".join(f"{n}× «{a}»" for a, n in avisos.items() if n) or "—"])
        lineas += _tabla(filas, ["Registros", "Configuración", "eventos/s", "registros/s", "s medidos", "arranque s",
                                 "completo", "avisos de faust"])
        lineas += ["", f"Eventos: {_num(_get(caudal, 'evento', 'eventos'))} en registros sueltos; "
                   f"{_num(_get(caudal, 'lote', 'eventos'))} en {_num(_get(caudal, 'lote', 'registros'))} lotes. "
                   "«No completo»: el procesador no terminó antes del tope y lo procesado se estima por la "
                   "fracción de solicitudes ya publicada (*). En lotes, el piso de faust y el consumo crudo terminan "
                   "en menos de un segundo: su cifra incluye la publicación de los registros y es una cota inferior."]
        filas = []
        for formato in ("evento", "lote"):
            # El consumo crudo no mide CPU: se salta solo.
            for clave, nombre in CONFIGURACIONES_CAUDAL:
                m = _get(caudal, formato, clave)
                if not m or not m.get("cpu"):
                    continue
                nucleos = m["cpu"].get("nucleos", {})
                incompleta = "" if m["cpu"].get("completa", True) else " (un proceso terminó a media medida)"
                filas.append([formato, nombre + incompleta, _num(m.get("cpu_us_evento"), 1),
                              _num(m.get("cpu_us_registro"), 1)]
                             + [_num(nucleos.get(parte), 2) for parte in ("trabajadores", "broker", "banco", "maquina")]
                             + [str(m["cpu"].get("nucleos_maquina", "—"))])
        if filas:
            lineas += ["", "### CPU gastada durante la medida", ""]
            lineas += _tabla(filas, ["Registros", "Configuración", "µs de CPU/evento", "µs de CPU/registro",
                                     "núcleos: trabajadores", "broker", "banco", "máquina", "de"])
            lineas += ["", "CPU de usuario + sistema de /proc. «banco»: el proceso que publica los registros y observa "
                       "las instantáneas; «máquina»: toda la máquina, también procesos ajenos. Si con dos trabajadores la "
                       "CPU por evento es la de uno, repartir las particiones no añade trabajo: lo que falta hasta 2× "
                       "es CPU que los trabajadores no obtienen (la máquina ocupada y la parte del broker, que comparte "
                       "los mismos núcleos), no un costo del diseño."]
        perfiles = [(f, c, _get(caudal, f, c, "perfil")) for f in ("evento", "lote") for c in ("procesador_1",)]
        perfiles = [p for p in perfiles if p[2]]
        if perfiles:
            lineas += ["", "### Dónde se va el tiempo (py-spy, trabajador 1)", ""]
            for formato, _, perfil in perfiles:
                lineas += [f"Registros «{formato}», {perfil['muestras']} muestras ({perfil['archivo']}), tiempo propio:", ""]
                lineas += [f"- {pct} % `{marco}`" for marco, pct in perfil["propio_pct"][:10]]
                lineas += [""]

    frescura = bancos.get("frescura")
    if frescura:
        lineas += ["", "## 2. Frescura", ""]
        lineas += [
            f"Carga constante de {_num(frescura.get('tasa'))} eventos/s ({frescura.get('formato')}; objetivo "
            f"{_num(frescura.get('tasa_objetivo'))}){'' if frescura.get('sostenida', True) else ' — el procesador no la sostuvo'}. "
            f"{frescura.get('motivo_tasa', '')}",
            "",
            f"Del envío de un marcador a verlo en `ObtenerIndicador` ({_num(frescura.get('marcadores'))} marcadores): "
            f"p50 {_num(frescura.get('p50_s'), 3)} s, p99 {_num(frescura.get('p99_s'), 3)} s, "
            f"máx {_num(frescura.get('max_s'), 3)} s; primer tercio p50 {_num(frescura.get('p50_primer_tercio_s'), 3)} s, "
            f"último tercio p50 {_num(frescura.get('p50_ultimo_tercio_s'), 3)} s. Parada la carga, todo lo publicado "
            f"se vio en {_num(frescura.get('vaciado_s'), 2)} s.",
            "",
            f"Hasta que el procesador publica la instantánea del marcador (su `actualizado_en`): p50 "
            f"{_num(frescura.get('hasta_publicar_p50_s'), 3)} s, p99 {_num(frescura.get('hasta_publicar_p99_s'), 3)} s; "
            f"de ahí a verla en la consulta, p99 {_num(frescura.get('publicado_a_visible_p99_s'), 3)} s.",
            "",
            f"Sin carga: p50 {_num(frescura.get('sin_carga_p50_s'), 3)} s, p99 {_num(frescura.get('sin_carga_p99_s'), 3)} s "
            f"({_num(frescura.get('sin_carga_marcadores'))} marcadores). Intervalo de publicación del procesador: "
            f"{frescura.get('intervalo_publicacion_s', '—')} s, el suelo estructural de la frescura.",
        ]

    consulta = bancos.get("consulta")
    if consulta:
        lineas += ["", "## 3. Servicio de consulta", ""]
        filas = []
        for clave, nombre in (("proyecto", "consulta (vista + validación)"), ("desnudo", "servidor gRPC desnudo")):
            c = consulta.get(clave, {})
            filas.append([nombre, _num(_get(c, "cerrado", "rps")), _num(_get(c, "cerrado", "p99_ms"), 2),
                          _num(_get(c, "abierto", "tasa")), _num(_get(c, "abierto", "p50_ms"), 2),
                          _num(_get(c, "abierto", "p99_ms"), 2), _num(_get(c, "abierto", "errores"))])
        lineas += _tabla(filas, ["Servidor", "peticiones/s (lazo cerrado)", "p99 ms (cerrado)", "tasa fija/s",
                                 "p50 ms", "p99 ms", "errores"])
        lineas += ["", f"Mismo cliente grpc.aio en el proceso del banco: {consulta.get('concurrencia')} llamadas "
                   f"concurrentes en lazo cerrado; a tasa fija, una llamada cada 1/tasa s. "
                   f"Vista con {_num(consulta.get('series'))} series."]

    memoria = bancos.get("memoria")
    if memoria:
        lineas += ["", "## 4. Memoria", ""]
        filas = []
        for nivel in sorted((k for k in memoria if k.isdigit()), key=int):
            m = memoria[nivel]
            for proceso in ("procesador", "consulta"):
                p = m.get(proceso, {})
                filas.append([_num(int(nivel)), proceso, _num((p.get("rss_base_bytes") or 0) / MIB),
                              _num((p.get("rss_bytes") or 0) / MIB), _num((p.get("pico_bytes") or 0) / MIB),
                              _num(p.get("bytes_por_par")), _num(m.get("series")),
                              "sí" if m.get("completo") else "no", _num(m.get("segundos"))])
        lineas += _tabla(filas, ["Pares", "Proceso", "RSS base MiB", "RSS MiB", "pico MiB", "bytes/par",
                                 "series en la vista", "completo", "s"])
        lin = memoria.get("linealidad")
        if lin:
            lineas += ["", f"Linealidad: coste por {lin.get('base', 'par')} (RSS − base) del nivel mayor dividido por "
                       f"el del menor — procesador {_num(lin.get('procesador'), 2)}×, consulta "
                       f"{_num(lin.get('consulta'), 2)}× (1× = lineal). En reposo, cada par del catálogo cuesta "
                       f"{_num(lin.get('procesador_reposo_bytes_por_par'))} bytes al procesador y "
                       f"{_num(lin.get('consulta_reposo_bytes_por_par'))} a la consulta."]
        for nivel in sorted((k for k in memoria if k.isdigit()), key=int):
            m = memoria[nivel]
            if not m.get("completo") and m.get("series_esperadas"):
                lineas += ["", f"{_num(int(nivel))} pares: el tope cortó la espera con {_num(m.get('series'))} de "
                           f"~{_num(m.get('series_esperadas'))} series publicadas; RSS estimado completo: procesador "
                           f"{_num((_get(m, 'procesador', 'rss_estimado_bytes') or 0) / MIB)} MiB, consulta "
                           f"{_num((_get(m, 'consulta', 'rss_estimado_bytes') or 0) / MIB)} MiB."]

    arranque = bancos.get("arranque")
    if arranque:
        lineas += ["", "## 5. Arranque", ""]
        lineas += [
            f"Del lanzamiento de `python -m servicios.procesador` a ver publicado el primer evento: en frío "
            f"{', '.join(_num(x, 1) for x in arranque.get('frio_s', []))} s (mediana {_num(arranque.get('frio_mediana_s'), 1)} s); "
            f"reinicio con su estado local {_num(arranque.get('reinicio_con_estado_s'), 1)} s; reinicio sin estado local "
            f"(recupera {_num(arranque.get('registros_changelog'))} registros de changelog) "
            f"{_num(arranque.get('reinicio_sin_estado_s'), 1)} s. Línea base: el piso de faust arranca en "
            f"{_num(_get(bancos, 'caudal', 'evento', 'piso_faust', 'arranque_s'), 1)} s.",
        ]

    publicacion = bancos.get("publicacion")
    if publicacion:
        lineas += ["", "## 6. Pasada de publicación", ""]
        lineas += [
            f"Con {_num(publicacion.get('eventos_historia'))} eventos de 13 meses de historia ya agregados, "
            f"{_num(publicacion.get('eventos_medidos'))} eventos de los últimos días en tandas de "
            f"{_num(publicacion.get('tanda'))} con una pasada tras cada una ({_num(publicacion.get('pasadas'))} "
            f"pasadas, sin Kafka): incremental (solo las ventanas anotadas por la agregación) p50 "
            f"{_num(publicacion.get('incremental_ms_p50'), 1)} ms, media {_num(publicacion.get('incremental_ms_media'), 1)} ms; "
            f"recalculando todas las ventanas de cada agencia tocada (línea base) p50 "
            f"{_num(publicacion.get('todo_ms_p50'), 1)} ms, media {_num(publicacion.get('todo_ms_media'), 1)} ms; "
            f"razón {_num(publicacion.get('razon_media'), 2)}. Lo publicado al final es idéntico.",
        ]

    trazas = bancos.get("trazas")
    if trazas:
        lineas += ["", "## 7. Trazas en la etapa por caso", ""]
        lineas += [
            f"{_num(trazas.get('registros'))} registros de un evento en lotes de {_num(trazas.get('lote'))} "
            f"({_num(trazas.get('contextos_por_lote_media'))} contextos distintos por lote, sin Kafka): apagadas "
            f"{_num(trazas.get('apagadas_us_por_registro'), 2)} µs por registro, encendidas "
            f"{_num(trazas.get('encendidas_us_por_registro'), 2)} µs (razón {_num(trazas.get('razon_encendidas'), 3)}; "
            f"el tramo del lote solo, {_num(trazas.get('encendidas_tramos_us_por_registro'), 2)} µs por registro). "
            f"Apagadas, la ruta agrega {_num(trazas.get('apagadas_costo_por_lote_us'), 2)} µs por lote.",
        ]

    lineas += ["", "Reproducir: `make bench` (tamaños en las variables `GPR_BENCH_*`, ver "
               "`tests/rendimiento/instrumentos.py`; `GPR_BENCH_PERFIL=1` añade perfiles de py-spy).", ""]
    return "\n".join(lineas)


def escribir_resumen(ruta_json: Path) -> Path:
    datos = json.loads(Path(ruta_json).read_text())
    ruta_png = Path(ruta_json).with_suffix(".png")
    grafico = ruta_png.name if dibujar(datos.get("bancos", {}), ruta_png) else None
    ruta_md = Path(ruta_json).with_suffix(".md")
    ruta_md.write_text(markdown(datos, grafico))
    return ruta_md


if __name__ == "__main__":
    raiz = Path(__file__).resolve().parents[2]
    print(escribir_resumen(Path(sys.argv[1]) if len(sys.argv) > 1 else raiz / "resultados" / "bench.json"))
