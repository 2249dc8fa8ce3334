"""Estado por caso y los aportes que cada evento hace a los cubos horarios.

Los aportes que dependen de varios eventos del caso (cumplimiento del plazo, tiempo de
atención, conclusión, reproceso, vencimiento…) se derivan del estado completo: al aplicar un
evento se emite la diferencia entre los aportes derivados después y antes. Así el resultado
no depende del orden de llegada (una entrega puede llegar antes que su recepción) y, si un
evento tardío cambia la primera entrega, el aporte anterior se retira con signo negativo.
Los eventos que no dependen del caso (solicitud, encuesta, reclamo, costo) aportan directo.

Un evento ya visto (misma fuente y evento_id) no cambia el estado y devuelve el mismo lote de
aportes que emitió la primera vez, con su secuencia original: la etapa siguiente lo descarta
si ya lo aplicó y lo aplica si se perdió antes de un corte. Para eso el estado guarda cada
evento aplicado tal como llegó y el lote se reconstruye solo cuando hace falta (`lote_emitido`).

Mientras se procesa, el estado es un `Caso` (objeto de Python); en la tabla, un mensaje
`EstadoCaso`. Los instantes son segundos enteros desde la época (se ignora la fracción).
"""

from __future__ import annotations

from gpr.v1 import eventos_pb2 as pb
from gpr.v1 import interno_pb2 as interno
from servicios.comun import dinero
from servicios.procesador.dominio import medidas as m
from servicios.procesador.dominio.percentiles import clave as clave_percentil

SEGUNDOS_POR_DIA = 86400
CANALES_DIGITALES = frozenset({pb.CANAL_WEB, pb.CANAL_APP, pb.CANAL_DIGITAL_ASISTIDO})
RESULTADOS_FALLIDOS = frozenset({pb.RESULTADO_ERROR, pb.RESULTADO_DESISTIDO})
_SEP = "\x1f"


class Caso:
    """El estado de un caso mientras se procesa.

    Leer un campo de un mensaje protobuf (upb) cuesta varias veces lo que un atributo de
    Python, y un mapa o un campo repetido más aún; cada evento lee y escribe decenas de
    campos de su caso. Así que el mensaje se copia a
    atributos al leerlo del almacén y se vuelca una vez por lote (`a_mensaje`), con los
    eventos nuevos añadidos de una vez al final de sus campos repetidos.
    """

    __slots__ = ("agencia_id", "servicio_id", "plazo_dias", "plazo_explicito", "canal_entrega",
                 "desempate_entrega", "resultado", "concluido_con", "desempate_conclusion", "devuelto",
                 "reintento", "plazo_servicio_dias", "recibido_en", "entregado_en", "cerrado_en",
                 "etapa_inicio", "etapa_fin", "etapas_cambiadas", "vistos", "mensaje", "nuevos")

    def __init__(self, agencia_id: str, servicio_id: str, plazo_servicio_dias: int):
        self.agencia_id = agencia_id
        self.servicio_id = servicio_id
        self.plazo_dias = self.plazo_servicio_dias = plazo_servicio_dias
        self.plazo_explicito = self.devuelto = self.reintento = False
        self.canal_entrega = self.resultado = self.concluido_con = 0
        self.desempate_entrega = self.desempate_conclusion = ""
        self.recibido_en = self.entregado_en = self.cerrado_en = None
        # None: aún en `mensaje`, sin copiar (ver `etapas`).
        self.etapa_inicio: dict[str, int] | None = {}
        self.etapa_fin: dict[str, int] | None = {}
        # Si cambió algún instante de etapa desde la lectura: solo entonces se fusionan los
        # mapas (llenar un mapa de protobuf desde Python va clave a clave).
        self.etapas_cambiadas = False
        # Identidades ya aplicadas (las del mensaje y las nuevas).
        self.vistos: set[str] = set()
        # El mensaje leído del almacén (None si el caso es nuevo): sus eventos no se copian.
        self.mensaje: interno.EstadoCaso | None = None
        # Por evento aplicado desde la lectura: (identidad, evento serializado, secuencia, partición).
        self.nuevos: list[tuple[str, bytes, int, int]] = []

    @classmethod
    def nuevo(cls, evento: pb.Evento, plazo_servicio_dias: int) -> Caso:
        """El caso vacío de `evento`, con el plazo que el catálogo da a su servicio."""
        return cls(evento.agencia_id, evento.servicio_id, plazo_servicio_dias)

    @classmethod
    def de_mensaje(cls, mensaje: interno.EstadoCaso) -> Caso:
        """El caso de un mensaje leído del almacén. Campo a campo y no en un bucle de
        `getattr`/`setattr`: corre por cada caso de cada lote y el bucle costaba bastante más."""
        caso = cls.__new__(cls)
        caso.agencia_id = mensaje.agencia_id
        caso.servicio_id = mensaje.servicio_id
        caso.plazo_dias = mensaje.plazo_dias
        caso.plazo_explicito = mensaje.plazo_explicito
        caso.canal_entrega = mensaje.canal_entrega
        caso.desempate_entrega = mensaje.desempate_entrega
        caso.resultado = mensaje.resultado
        caso.concluido_con = mensaje.concluido_con
        caso.desempate_conclusion = mensaje.desempate_conclusion
        caso.devuelto = mensaje.devuelto
        caso.reintento = mensaje.reintento
        caso.plazo_servicio_dias = mensaje.plazo_servicio_dias
        caso.recibido_en = mensaje.recibido_en if mensaje.HasField("recibido_en") else None
        caso.entregado_en = mensaje.entregado_en if mensaje.HasField("entregado_en") else None
        caso.cerrado_en = mensaje.cerrado_en if mensaje.HasField("cerrado_en") else None
        # Los mapas de etapas se copian solo si llega un evento de etapa (`etapas`): copiar un
        # mapa de protobuf pasa por las vistas de Python clave a clave, y se notaba en el
        # costo del trabajador en registros sueltos.
        caso.etapa_inicio = caso.etapa_fin = None
        caso.etapas_cambiadas = False
        caso.vistos = set(mensaje.vistos)
        caso.mensaje = mensaje
        caso.nuevos = []
        return caso

    def etapas(self) -> tuple[dict[str, int], dict[str, int]]:
        """Los instantes de inicio y fin por (etapa, intento), copiados del mensaje la primera vez."""
        if self.etapa_inicio is None:
            inicio, fin = self.mensaje.etapa_inicio, self.mensaje.etapa_fin
            self.etapa_inicio = {clave: inicio[clave] for clave in inicio}
            self.etapa_fin = {clave: fin[clave] for clave in fin}
        return self.etapa_inicio, self.etapa_fin

    def a_mensaje(self) -> interno.EstadoCaso:
        """El mensaje con el estado actual; deja el caso como recién leído de él.

        Se arma un mensaje con los campos del caso y solo los eventos nuevos, y se fusiona con
        el leído (`MergeFrom`, en C): los campos presentes se sustituyen, los mapas se
        actualizan por clave y los repetidos se alargan. Un campo sin presencia con su valor
        por defecto no se fusionaría, pero ninguno vuelve a él (una vez verdadero o no vacío,
        sigue así); los dos que pueden volver a 0 la tienen (`optional` en el proto).
        """
        nuevos, self.nuevos = self.nuevos, []
        parcial = interno.EstadoCaso(
            agencia_id=self.agencia_id, servicio_id=self.servicio_id, plazo_dias=self.plazo_dias,
            plazo_explicito=self.plazo_explicito, canal_entrega=self.canal_entrega,
            desempate_entrega=self.desempate_entrega, resultado=self.resultado,
            concluido_con=self.concluido_con, desempate_conclusion=self.desempate_conclusion,
            devuelto=self.devuelto, reintento=self.reintento, plazo_servicio_dias=self.plazo_servicio_dias,
            recibido_en=self.recibido_en, entregado_en=self.entregado_en, cerrado_en=self.cerrado_en,
            vistos=[ident for ident, _, _, _ in nuevos],
        )
        if self.etapas_cambiadas:
            parcial.etapa_inicio.update(self.etapa_inicio)
            parcial.etapa_fin.update(self.etapa_fin)
            self.etapas_cambiadas = False
        if nuevos:
            parcial.eventos.extend([bruto for _, bruto, _, _ in nuevos])
            parcial.secuencias.extend([secuencia for _, _, secuencia, _ in nuevos])
            parcial.particiones.extend([particion for _, _, _, particion in nuevos])
        if self.mensaje is None:
            self.mensaje = parcial
        else:
            self.mensaje.MergeFrom(parcial)
        return self.mensaje


def poner_aportes(lote: interno.LoteAportes, aportes: dict) -> None:
    """Escribe en `lote` los aportes (medida, instante) → valor, ordenados."""
    claves = sorted(aportes)
    lote.medidas.extend([medida for medida, _ in claves])
    lote.instantes.extend([instante for _, instante in claves])
    lote.valores.extend([aportes[clave] for clave in claves])


def aportes_de(lote: interno.LoteAportes) -> list[tuple[str, int, float]]:
    """Los aportes de un lote como (medida, instante, valor)."""
    return list(zip(lote.medidas, lote.instantes, lote.valores))


def identidad(evento: pb.Evento) -> str:
    """Identidad de un evento para el efecto exactamente-una-vez: (fuente, evento_id)."""
    return f"{evento.fuente}{_SEP}{evento.evento_id}"


def _conclusion(caso: Caso) -> int | None:
    entregado, cerrado = caso.entregado_en, caso.cerrado_en
    if entregado is None:
        return cerrado
    return entregado if cerrado is None or entregado < cerrado else cerrado


def _sumar(aportes: dict, medida: str, instante: int, valor: float = 1) -> None:
    clave = (medida, instante)
    aportes[clave] = aportes.get(clave, 0) + valor


def _derivados_del_caso(caso: Caso, aportes: dict) -> None:
    """Aportes derivados de recepción, entrega y conclusión (todo menos las etapas)."""
    recibido = caso.recibido_en
    entregado = caso.entregado_en
    concluido = _conclusion(caso)
    plazo_s = caso.plazo_dias * SEGUNDOS_POR_DIA

    if recibido is not None:
        _sumar(aportes, m.CONCLUSION_CASOS, recibido)
        if concluido is not None:
            _sumar(aportes, m.CONCLUSION_BUENOS, recibido)
        # Vencido en (recibido + plazo, concluido): la edad debe *superar* el plazo.
        vence = recibido + plazo_s + 1
        if concluido is None or concluido > vence - 1:
            _sumar(aportes, m.VENCIDOS, vence)
            if concluido is not None:
                _sumar(aportes, m.VENCIDOS, concluido, -1)
    if entregado is not None:
        _sumar(aportes, m.ENTREGAS, entregado)
        if caso.canal_entrega in CANALES_DIGITALES:
            _sumar(aportes, m.ENTREGAS_DIGITALES, entregado)
        if recibido is not None:
            atencion = entregado - recibido
            _sumar(aportes, m.PLAZO_CASOS, entregado)
            if atencion <= plazo_s:
                _sumar(aportes, m.PLAZO_BUENOS, entregado)
            _sumar(aportes, m.histograma(m.ATENCION, clave_percentil(atencion)), entregado)
    if concluido is not None:
        _sumar(aportes, m.CONCLUIDOS, concluido)
        if caso.devuelto or caso.reintento:
            _sumar(aportes, m.REPROCESO, concluido)
        if caso.resultado in RESULTADOS_FALLIDOS:
            _sumar(aportes, m.ERRORES, concluido)


def _derivado_de_etapa(caso: Caso, etapa_intento: str, aportes: dict) -> None:
    """Aporte de una (etapa, intento): su permanencia, si se conocen inicio y fin."""
    inicios, fines = caso.etapas()
    fin = fines.get(etapa_intento)
    inicio = inicios.get(etapa_intento)
    if fin is not None and inicio is not None:
        etapa = etapa_intento.split(_SEP, 1)[0]
        _sumar(aportes, m.histograma(m.etapa(etapa), clave_percentil(fin - inicio)), fin)


def _aportes_directos(evento: pb.Evento, tipo: int, t: int, aportes: dict) -> None:
    if tipo == pb.TIPO_EVENTO_SOLICITUD_RECIBIDA:
        _sumar(aportes, m.SOLICITUDES, t)
    elif tipo == pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA:
        s = evento.satisfaccion
        puntaje, escala_max = s.puntaje, s.escala_max
        _sumar(aportes, m.ENCUESTAS, t)
        if puntaje >= escala_max - 1:
            _sumar(aportes, m.ENCUESTAS_TOP2, t)
        _sumar(aportes, m.SATISFACCION_SUMA, t, (puntaje - 1) / (escala_max - 1))
    elif tipo == pb.TIPO_EVENTO_RECLAMO_REGISTRADO:
        _sumar(aportes, m.RECLAMOS, t)
    elif tipo == pb.TIPO_EVENTO_COSTO_REGISTRADO:
        costo = evento.costo
        _sumar(aportes, m.COSTO_TOTAL, t, dinero.a_diezmilesimas(costo.unidades, costo.nanos))


def _antes(t: int, desempate: str, t_actual: int | None, desempate_actual: str) -> bool:
    return t_actual is None or (t, desempate) < (t_actual, desempate_actual)


def _actualizar_estado(caso: Caso, evento: pb.Evento, tipo: int, t: int) -> None:
    if tipo == pb.TIPO_EVENTO_SOLICITUD_RECIBIDA:
        if caso.recibido_en is None or t < caso.recibido_en:
            caso.recibido_en = t
        if evento.HasField("plazo_dias"):
            caso.plazo_dias = evento.plazo_dias
            caso.plazo_explicito = True
    elif tipo == pb.TIPO_EVENTO_SERVICIO_ENTREGADO:
        desempate = evento.evento_id
        if _antes(t, desempate, caso.entregado_en, caso.desempate_entrega):
            caso.entregado_en = t
            caso.canal_entrega = evento.canal
            caso.desempate_entrega = desempate
    elif tipo == pb.TIPO_EVENTO_CASO_CERRADO:
        if caso.cerrado_en is None or t < caso.cerrado_en:
            caso.cerrado_en = t
    elif tipo == pb.TIPO_EVENTO_CASO_DEVUELTO:
        caso.devuelto = True
    elif tipo in _DE_ETAPA:
        intento = max(evento.intento, 1)
        if intento > 1:
            caso.reintento = True
        clave = f"{evento.etapa_id}{_SEP}{intento}"
        inicios, fines = caso.etapas()
        mapa = inicios if tipo == pb.TIPO_EVENTO_ETAPA_INICIADA else fines
        previo = mapa.get(clave)
        if previo is None or t < previo:
            mapa[clave] = t
            caso.etapas_cambiadas = True
    if tipo in _DE_CONCLUSION:
        desempate = evento.evento_id
        actual = caso.concluido_con if caso.desempate_conclusion else None
        if _antes(t, desempate, actual, caso.desempate_conclusion):
            caso.concluido_con = t
            caso.desempate_conclusion = desempate
            caso.resultado = evento.resultado


# Tipos que solo aportan directo: no cambian nada del caso de lo que dependen los derivados.
_SOLO_DIRECTOS = frozenset({pb.TIPO_EVENTO_ENCUESTA_RESPONDIDA, pb.TIPO_EVENTO_RECLAMO_REGISTRADO, pb.TIPO_EVENTO_COSTO_REGISTRADO})
_DE_ETAPA = frozenset({pb.TIPO_EVENTO_ETAPA_INICIADA, pb.TIPO_EVENTO_ETAPA_COMPLETADA})
_DE_CONCLUSION = frozenset({pb.TIPO_EVENTO_SERVICIO_ENTREGADO, pb.TIPO_EVENTO_CASO_CERRADO})


def _restar(aportes: dict, previos: dict) -> None:
    for clave, valor in previos.items():
        aportes[clave] = aportes.get(clave, 0) - valor


def cambios_de(caso: Caso, evento: pb.Evento, tipo: int, t: int) -> dict:
    """Aplica un evento al caso (lo modifica) y devuelve sus aportes, (medida, instante) →
    valor, sin ceros. `tipo` y `t` son `evento.tipo` y `evento.ocurrido_en.seconds`, que
    quien llama ya leyó. No registra el evento como visto: eso es `registrar`.

    Solo se recalculan los derivados que el tipo de evento puede cambiar: los de una etapa
    dependen únicamente de su inicio y su fin, y una encuesta, un reclamo o un costo no
    tocan el caso.
    """
    cambios: dict = {}
    if tipo in _DE_ETAPA:
        intento = evento.intento
        etapa_intento = f"{evento.etapa_id}{_SEP}{max(intento, 1)}"
        antes: dict = {}
        _derivado_de_etapa(caso, etapa_intento, antes)
        reintento_antes = caso.reintento
        if intento > 1 and not reintento_antes:
            _derivados_del_caso(caso, antes)
        _actualizar_estado(caso, evento, tipo, t)
        _derivado_de_etapa(caso, etapa_intento, cambios)
        if caso.reintento != reintento_antes:
            _derivados_del_caso(caso, cambios)
        _restar(cambios, antes)
    elif tipo in _SOLO_DIRECTOS:
        _aportes_directos(evento, tipo, t, cambios)
    else:
        antes = {}
        _derivados_del_caso(caso, antes)
        _actualizar_estado(caso, evento, tipo, t)
        _aportes_directos(evento, tipo, t, cambios)
        _derivados_del_caso(caso, cambios)
        _restar(cambios, antes)
    return {clave: valor for clave, valor in cambios.items() if valor}


def armar_lote(caso: Caso, particion: int, secuencia: int, ocurrido_en: int, cambios: dict) -> interno.LoteAportes:
    """El lote individual de un evento del caso."""
    lote = interno.LoteAportes(particion_origen=particion, secuencia=secuencia, ocurrido_en=ocurrido_en,
                               agencia_id=caso.agencia_id, servicio_id=caso.servicio_id)
    poner_aportes(lote, cambios)
    return lote


def registrar(caso: Caso, evento: pb.Evento, ident: str, particion: int, secuencia: int,
              bruto: bytes | None = None) -> None:
    """Anota el evento como visto, con lo necesario para devolver su lote si vuelve a llegar.
    `bruto`: el evento serializado, si quien llama ya lo tiene."""
    caso.vistos.add(ident)
    caso.nuevos.append((ident, bruto if bruto is not None else evento.SerializeToString(), secuencia, particion))


def lote_emitido(mensaje: interno.EstadoCaso, ident: str) -> interno.LoteAportes | None:
    """El lote que emitió el evento `ident` de un estado guardado, igual al de entonces; None
    si el estado no lo tiene.

    Se reconstruye aplicando a un caso vacío los eventos anteriores en el orden en que
    llegaron: `cambios_de` depende solo del caso y del evento, así que da lo mismo que la
    primera vez. Solo se hace con un repetido (un reproceso tras un corte o un emisor que
    reintenta), así que cuesta poco que sea caro.
    """
    vistos = list(mensaje.vistos)
    if ident not in vistos:
        return None
    posicion = vistos.index(ident)
    copia = Caso(mensaje.agencia_id, mensaje.servicio_id, mensaje.plazo_servicio_dias)
    for bruto in mensaje.eventos[:posicion]:
        evento = pb.Evento.FromString(bruto)
        cambios_de(copia, evento, evento.tipo, evento.ocurrido_en.seconds)
    evento = pb.Evento.FromString(mensaje.eventos[posicion])
    t = evento.ocurrido_en.seconds
    return armar_lote(copia, mensaje.particiones[posicion], mensaje.secuencias[posicion], t,
                      cambios_de(copia, evento, evento.tipo, t))
