"""Canales de notificación de Alertmanager desde el entorno (`gpr alertmanager configurar`).

Lo esperado se escribe a mano; la configuración generada la valida el `amtool` real, y el
enrutamiento (qué receptor recibe qué) también lo decide `amtool config routes test`.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml
from typer.testing import CliRunner

from conftest import RAIZ
from servicios.cli.principal import app
from servicios.comun.canales import CanalesInvalidos, canales_del_entorno, configurar

ALERTMANAGER = RAIZ / "despliegue" / "alertmanager" / "alertmanager.yml"
BASE = yaml.safe_load(ALERTMANAGER.read_text(encoding="utf-8"))
RECEPTORES = [r["name"] for r in BASE["receivers"]]
SMTP = {"GPR_SMTP_SERVIDOR": "smtp.ejemplo.gob:587", "GPR_SMTP_REMITENTE": "gpr@ejemplo.gob"}


def _amtool() -> str:
    ruta = shutil.which("amtool")
    if ruta is None:
        pytest.fail("falta amtool en el PATH; instálelo con: sudo bash despliegue/instalar-herramientas.sh")
    return ruta


def test_la_configuracion_versionada_no_tiene_direcciones():
    """Nada de destinos escritos en el repositorio: los pone el entorno al arrancar."""
    assert all(set(r) == {"name"} for r in BASE["receivers"]), BASE["receivers"]
    assert "latido" in RECEPTORES
    assert not {k for k in BASE.get("global", {}) if k.startswith("smtp_")}


def test_lo_mas_especifico_gana_y_todos_no_llega_al_latido():
    canales = canales_del_entorno(RECEPTORES, {
        "GPR_ALERTAS_WEBHOOK_TODOS": "https://tickets.ejemplo.gob/todos",
        "GPR_ALERTAS_WEBHOOK_REGISTROS": "https://tickets.ejemplo.gob/registros",
        "GPR_ALERTAS_WEBHOOK_REGISTROS_GUARDIA": "https://guardia.ejemplo.gob/registros",
        "GPR_ALERTAS_CORREO_REDES_DE_SALUD": "a@minsa.gob, b@minsa.gob",
    })
    assert canales["registros-guardia"].webhooks == ["https://guardia.ejemplo.gob/registros"]
    assert canales["registros-tickets"].webhooks == ["https://tickets.ejemplo.gob/registros"]
    assert canales["plataforma-guardia"].webhooks == ["https://tickets.ejemplo.gob/todos"]
    assert canales["redes-de-salud-tickets"].correos == ["a@minsa.gob", "b@minsa.gob"]
    assert canales["registros-guardia"].correos == []
    assert canales["latido"].webhooks == [] and canales["latido"].origen == []


def test_la_url_secreta_se_lee_de_su_archivo(tmp_path):
    secreto = tmp_path / "webhook"
    secreto.write_text("https://chat.ejemplo.gob/hooks/TOKEN-SECRETO\n", encoding="utf-8")
    canales = canales_del_entorno(RECEPTORES, {"GPR_ALERTAS_WEBHOOK_LATIDO_ARCHIVO": str(secreto)})
    assert canales["latido"].webhooks == ["https://chat.ejemplo.gob/hooks/TOKEN-SECRETO"]
    assert canales["latido"].origen == ["GPR_ALERTAS_WEBHOOK_LATIDO_ARCHIVO"]


@pytest.mark.parametrize("entorno, mensaje", [
    ({"GPR_ALERTAS_WEBHOOK_REGISTRO": "https://x.gob/"}, "GPR_ALERTAS_WEBHOOK_REGISTRO: REGISTRO no es un receptor ni un equipo"),
    ({"GPR_ALERTAS_SLACK_REGISTROS": "https://x.gob/"}, "GPR_ALERTAS_SLACK_REGISTROS: variable desconocida"),
    ({"GPR_ALERTAS_WEBHOOK_REGISTROS": "tickets.gob/token=abc123"}, "GPR_ALERTAS_WEBHOOK_REGISTROS: debe ser una URL http:// o https:// (24 caracteres recibidos)"),
    ({"GPR_ALERTAS_WEBHOOK_REGISTROS": "https://a.gob/", "GPR_ALERTAS_WEBHOOK_REGISTROS_ARCHIVO": "/x"},
     "ya define el webhook de REGISTROS; use solo una"),
    ({"GPR_ALERTAS_WEBHOOK_REGISTROS_ARCHIVO": "/no/existe"}, "GPR_ALERTAS_WEBHOOK_REGISTROS_ARCHIVO=/no/existe: no se puede leer"),
    ({"GPR_ALERTAS_CORREO_REGISTROS": "guardia-en-sunarp"}, "GPR_ALERTAS_CORREO_REGISTROS: dirección de correo inválida: guardia-en-sunarp"),
])
def test_cada_error_nombra_su_variable(entorno, mensaje):
    with pytest.raises(CanalesInvalidos) as error:
        configurar(BASE, entorno)
    assert mensaje in str(error.value)
    # Una URL mal escrita puede llevar un token: no se repite.
    assert "abc123" not in str(error.value)


@pytest.mark.parametrize("entorno, mensaje", [
    ({"GPR_ALERTAS_CORREO_REGISTROS": "g@sunarp.gob"}, "GPR_ALERTAS_CORREO_REGISTROS: hay destinatarios de correo pero falta el servidor"),
    ({**SMTP, "GPR_SMTP_SERVIDOR": "smtp.ejemplo.gob"}, "GPR_SMTP_SERVIDOR='smtp.ejemplo.gob': debe ser host:puerto"),
    ({**SMTP, "GPR_SMTP_CLAVE": "x"}, "GPR_SMTP_CLAVE: variable desconocida"),
    ({**SMTP, "GPR_SMTP_CLAVE_ARCHIVO": "/no/existe", "GPR_SMTP_USUARIO": "u"}, "GPR_SMTP_CLAVE_ARCHIVO=/no/existe: no se puede leer"),
    ({**SMTP, "GPR_SMTP_TLS": "quizas"}, "GPR_SMTP_TLS='quizas': debe ser si o no"),
])
def test_errores_del_servidor_de_correo(entorno, mensaje):
    with pytest.raises(CanalesInvalidos) as error:
        configurar(BASE, entorno)
    assert mensaje in str(error.value)


def test_la_configuracion_generada_la_acepta_amtool_y_enruta_como_se_espera(tmp_path):
    clave = tmp_path / "clave-smtp"
    clave.write_text("s3creta\n", encoding="utf-8")
    configuracion, _ = configurar(BASE, {
        **SMTP, "GPR_SMTP_USUARIO": "gpr", "GPR_SMTP_CLAVE_ARCHIVO": str(clave),
        "GPR_ALERTAS_WEBHOOK_REGISTROS": "https://tickets.sunarp.gob/alertas",
        "GPR_ALERTAS_CORREO_REGISTROS_GUARDIA": "guardia@sunarp.gob",
        "GPR_ALERTAS_WEBHOOK_LATIDO": "https://latidos.ejemplo.gob/ping/abc",
    }, plantillas=str(ALERTMANAGER.parent / "plantillas"))
    assert configuracion["global"]["smtp_auth_password"] == "s3creta"
    assert configuracion["global"]["smtp_require_tls"] is True
    receptores = {r["name"]: r for r in configuracion["receivers"]}
    assert receptores["registros-guardia"]["email_configs"][0]["to"] == "guardia@sunarp.gob"
    assert receptores["registros-guardia"]["email_configs"][0]["send_resolved"] is True
    assert receptores["registros-tickets"]["webhook_configs"][0]["url"] == "https://tickets.sunarp.gob/alertas"
    assert "email_configs" not in receptores["registros-tickets"]
    # El latido no tiene resolución que avisar.
    assert receptores["latido"]["webhook_configs"][0]["send_resolved"] is False
    archivo = tmp_path / "alertmanager.yml"
    archivo.write_text(yaml.safe_dump(configuracion, allow_unicode=True), encoding="utf-8")
    r = subprocess.run([_amtool(), "check-config", str(archivo)], capture_output=True, text=True)
    assert r.returncode == 0 and "1 templates" in r.stdout, r.stdout + r.stderr

    def ruta(*etiquetas):
        r = subprocess.run([_amtool(), "config", "routes", "test", f"--config.file={archivo}", *etiquetas],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    assert ruta("alertname=Watchdog", "severidad=info", "equipo=plataforma") == "latido"
    assert ruta("alertname=MetaIncumplida", "severidad=critica", "equipo=registros") == "registros-guardia"
    assert ruta("alertname=ServicioCaido", "severidad=critica", "equipo=plataforma") == "plataforma-guardia"


def test_la_orden_escribe_la_configuracion_y_dice_que_recibe_cada_receptor(tmp_path, monkeypatch):
    for variable in [v for v in os.environ if v.startswith(("GPR_ALERTAS_", "GPR_SMTP_"))]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("GPR_ALERTAS_WEBHOOK_PLATAFORMA", "https://ops.ejemplo.gob/hook?token=NO-MOSTRAR")
    salida = tmp_path / "generado" / "alertmanager.yml"
    r = CliRunner().invoke(app, ["alertmanager", "configurar", "--salida", str(salida), "--base", str(ALERTMANAGER)])
    assert r.exit_code == 0, r.output
    assert "plataforma-guardia: webhook (GPR_ALERTAS_WEBHOOK_PLATAFORMA)" in r.stdout
    assert "NO-MOSTRAR" not in r.stdout + r.stderr
    assert "aviso: sin canales" in r.stderr and "registros-guardia" in r.stderr
    generado = yaml.safe_load(salida.read_text(encoding="utf-8"))
    assert generado["templates"] == [str((ALERTMANAGER.parent / "plantillas" / "*.tmpl").resolve())]

    monkeypatch.setenv("GPR_ALERTAS_WEBHOOK_PLATAFORMAS", "https://ops.ejemplo.gob/")
    r = CliRunner().invoke(app, ["alertmanager", "configurar", "--salida", str(tmp_path / "otro.yml")])
    assert r.exit_code == 2
    assert "GPR_ALERTAS_WEBHOOK_PLATAFORMAS: PLATAFORMAS no es un receptor ni un equipo" in r.stderr
    assert not (tmp_path / "otro.yml").exists()
