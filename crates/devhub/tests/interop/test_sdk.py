"""The official Python SDKs against devhub: device SDK over WebSocket/TLS (443) and
MQTT/TLS (8883), service SDK over HTTPS."""

import json
import threading
import time

import pytest
from azure.iot.device import IoTHubDeviceClient, IoTHubModuleClient, Message, MethodResponse
from azure.iot.device.exceptions import CredentialError
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod, Twin, TwinProperties


def ca_text(hub):
    with open(hub.ca) as f:
        return f.read()


def device_client(hub, device="sdk-dev", websockets=True):
    return IoTHubDeviceClient.create_from_connection_string(
        hub.device_cs(device), websockets=websockets, server_verification_cert=ca_text(hub),
        connection_retry=False)


def wait_for(predicate, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("websockets", [True, False], ids=["wss-443", "mqtts-8883"])
def test_telemetry_with_properties_and_twin(devhub, websockets):
    client = device_client(devhub, websockets=websockets)
    client.connect()
    try:
        msg = Message(json.dumps({"temp": 21.5}))
        msg.message_id = f"mid-{websockets}"
        msg.content_type = "application/json"
        msg.content_encoding = "utf-8"
        msg.custom_properties["alert"] = "high temp"
        client.send_message(msg)
        assert wait_for(lambda: any(e["properties"]["system"].get("$.mid") == f"mid-{websockets}"
                                    for e in devhub.events("sdk-dev")))
        ev = next(e for e in devhub.events("sdk-dev") if e["properties"]["system"].get("$.mid") == f"mid-{websockets}")
        assert ev["properties"]["system"]["$.ct"] == "application/json"
        assert ev["properties"]["application"]["alert"] == "high temp"
        assert json.loads(ev["body"]) == {"temp": 21.5}
        assert ev["properties"]["stamps"]["iothub-connection-device-id"] == "sdk-dev"

        twin = client.get_twin()
        assert "desired" in twin and "reported" in twin
        before = twin["reported"]["$version"]
        client.patch_twin_reported_properties({"firmware": {"version": "1.0.%d" % int(websockets)}})
        twin = client.get_twin()
        assert twin["reported"]["$version"] == before + 1
        assert twin["reported"]["firmware"]["version"] == "1.0.%d" % int(websockets)
    finally:
        client.shutdown()


def test_desired_update_method_and_c2d(devhub):
    client = device_client(devhub)
    desired, c2d = [], []
    got_method = threading.Event()

    def on_method(req):
        got_method.set()
        client.send_method_response(MethodResponse.create_from_method_request(req, 201, {"echo": req.payload}))

    client.on_twin_desired_properties_patch_received = desired.append
    client.on_method_request_received = on_method
    client.on_message_received = c2d.append
    client.connect()
    try:
        rm = IoTHubRegistryManager.from_connection_string(devhub.service_cs)
        twin = rm.get_twin("sdk-dev")
        rm.update_twin("sdk-dev", Twin(properties=TwinProperties(desired={"interval": 7})), twin.etag)
        # On connect the SDK hands the handler the whole desired section it fetched
        # ({"$version": 1}); the update itself follows.
        assert wait_for(lambda: any(d.get("interval") == 7 for d in desired)), desired
        update = next(d for d in desired if d.get("interval") == 7)
        assert update["$version"] == 2

        result = rm.invoke_device_method(
            "sdk-dev", CloudToDeviceMethod(method_name="reboot", payload={"delay": 1}, response_timeout_in_seconds=15))
        assert got_method.is_set()
        assert result.status == 201
        assert result.payload == {"echo": {"delay": 1}}

        session = devhub.service_session()
        r = session.post(f"https://localhost:443/devices/sdk-dev/messages/deviceBound?api-version=2021-04-12",
                         data=b"hello sdk", headers={"iothub-messageid": "c2d-sdk", "iothub-app-color": "blue",
                                                     "content-type": "text/plain"})
        assert r.status_code == 200, r.text
        assert wait_for(lambda: c2d), "C2D message did not arrive"
        m = c2d[-1]
        assert m.data == b"hello sdk"
        assert m.message_id == "c2d-sdk"
        assert m.custom_properties.get("color") == "blue"
        assert m.content_type == "text/plain"
    finally:
        client.shutdown()


def test_service_sdk_creates_devices_and_modules(devhub):
    rm = IoTHubRegistryManager.from_connection_string(devhub.service_cs)
    dev = rm.create_device_with_sas("sdk-new", "", "", "enabled")
    assert dev.device_id == "sdk-new"
    assert dev.authentication.symmetric_key.primary_key
    got = rm.get_device("sdk-new")
    assert got.status == "enabled"
    mod = rm.create_module_with_sas("sdk-new", "mod1", "", "", "")
    assert mod.module_id == "mod1"

    cs = (f"HostName=localhost;DeviceId=sdk-new;ModuleId=mod1;"
          f"SharedAccessKey={mod.authentication.symmetric_key.primary_key};GatewayHostName=127.0.0.1")
    client = IoTHubModuleClient.create_from_connection_string(
        cs, websockets=True, server_verification_cert=ca_text(devhub), connection_retry=False)
    client.connect()
    try:
        client.send_message(Message("from module"))
        assert wait_for(lambda: any(e.get("module_id") == "mod1" for e in devhub.events("sdk-new")))
        client.patch_twin_reported_properties({"role": "sensor"})
        twin = rm.get_module_twin("sdk-new", "mod1")
        assert twin.properties.reported["role"] == "sensor"
    finally:
        client.shutdown()
    rm.delete_device("sdk-new")
    with pytest.raises(Exception):
        rm.get_device("sdk-new")


def test_wrong_key_is_refused_and_others_keep_working(devhub):
    bad = devhub.device_cs("sdk-dev2").split(";SharedAccessKey=")[0] + \
        ";SharedAccessKey=d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktMTI=;GatewayHostName=127.0.0.1"
    client = IoTHubDeviceClient.create_from_connection_string(
        bad, websockets=True, server_verification_cert=ca_text(devhub), connection_retry=False)
    # CONNACK 5 from the hub surfaces as CredentialError (a TLS failure would not).
    with pytest.raises(CredentialError):
        client.connect()
    client.shutdown()
    good = device_client(devhub, "sdk-dev2")
    good.connect()
    good.send_message(Message("still serving"))
    good.shutdown()


def derived_key(group_key, registration_id):
    """The group-enrollment device key, as the DPS docs compute it."""
    import base64
    import hashlib
    import hmac

    digest = hmac.new(base64.b64decode(group_key), registration_id.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


@pytest.mark.parametrize("enrollment", ["group", "individual"])
def test_provisioning_client_registers_then_the_device_sends(devhub, enrollment):
    from azure.iot.device import ProvisioningDeviceClient

    from conftest import GROUP_KEY, ID_SCOPE, SOLO_KEY

    if enrollment == "group":
        registration_id, key = "sdk-prov-1", derived_key(GROUP_KEY, "sdk-prov-1")
    else:
        registration_id, key = "sdk-solo", SOLO_KEY
    prov = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host="127.0.0.1", registration_id=registration_id, id_scope=ID_SCOPE,
        symmetric_key=key, websockets=True, server_verification_cert=ca_text(devhub))
    prov.provisioning_payload = {"modelId": "dtmi:com:example:Thermostat;1"}
    result = prov.register()
    assert result.status == "assigned", result
    state = result.registration_state
    assert state.assigned_hub == "localhost"
    assert state.device_id == registration_id

    client = IoTHubDeviceClient.create_from_symmetric_key(
        symmetric_key=key, hostname=state.assigned_hub, device_id=state.device_id,
        websockets=True, server_verification_cert=ca_text(devhub), gateway_hostname="127.0.0.1",
        connection_retry=False)
    client.connect()
    try:
        msg = Message(json.dumps({"provisioned": True}))
        msg.message_id = f"prov-{enrollment}"
        client.send_message(msg)
        assert wait_for(lambda: any(e["properties"]["system"].get("$.mid") == f"prov-{enrollment}"
                                    for e in devhub.events(registration_id)))
    finally:
        client.shutdown()

    # A wrong key is refused by the provisioning service.
    bad = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host="127.0.0.1", registration_id=registration_id, id_scope=ID_SCOPE,
        symmetric_key=GROUP_KEY, websockets=True, server_verification_cert=ca_text(devhub))
    with pytest.raises(Exception):
        bad.register()


def test_service_sdk_etags_and_statistics(devhub):
    """The service SDK sends If-Match "*" (quoted) when no etag is given; a stale etag is 412;
    the registry and service statistics count what is there."""
    from msrest.exceptions import HttpOperationError

    rm = IoTHubRegistryManager.from_connection_string(devhub.service_cs)
    before = rm.get_device_registry_statistics()
    rm.create_device_with_sas("sdk-etag", "", "", "enabled")
    dev = rm.get_device("sdk-etag")
    # Any etag ("*", the SDK's default), then the current one, then a stale one.
    assert rm.update_device_with_sas("sdk-etag", None, "", "", "disabled").status == "disabled"
    stats = rm.get_device_registry_statistics()
    assert stats.total_device_count == before.total_device_count + 1
    assert stats.disabled_device_count == before.disabled_device_count + 1
    assert stats.enabled_device_count == before.enabled_device_count
    current = rm.get_device("sdk-etag").etag
    assert current != dev.etag
    assert rm.update_device_with_sas("sdk-etag", current, "", "", "enabled").status == "enabled"
    with pytest.raises(HttpOperationError) as stale:
        rm.update_device_with_sas("sdk-etag", dev.etag, "", "", "disabled")
    assert stale.value.response.status_code == 412
    assert rm.get_device("sdk-etag").status == "enabled"

    twin = rm.get_twin("sdk-etag")
    replaced = rm.replace_twin("sdk-etag", Twin(tags={"only": True}, properties=TwinProperties(desired={"mode": "eco"})))
    assert replaced.tags == {"only": True}
    with pytest.raises(HttpOperationError) as stale_twin:
        rm.update_twin("sdk-etag", Twin(tags={"x": 1}), twin.etag)
    assert stale_twin.value.response.status_code == 412
    assert rm.get_twin("sdk-etag").tags == {"only": True}

    with pytest.raises(HttpOperationError) as stale_delete:
        rm.delete_device("sdk-etag", etag=dev.etag)
    assert stale_delete.value.response.status_code == 412
    rm.get_device("sdk-etag")

    assert rm.get_service_statistics().connected_device_count == 0
    client = device_client(devhub, "sdk-dev2")
    client.connect()
    try:
        assert rm.get_service_statistics().connected_device_count == 1
    finally:
        client.shutdown()
    assert wait_for(lambda: rm.get_service_statistics().connected_device_count == 0)
    rm.delete_device("sdk-etag")
    assert rm.get_device_registry_statistics().total_device_count == before.total_device_count


def test_service_sdk_queries_twins_a_page_at_a_time(devhub):
    from azure.iot.hub.models import QuerySpecification
    from msrest.exceptions import HttpOperationError

    rm = IoTHubRegistryManager.from_connection_string(devhub.service_cs)
    ids = [f"sdk-q{i}" for i in range(5)]
    for i, d in enumerate(ids):
        rm.create_device_with_sas(d, "", "", "enabled")
        rm.update_twin(d, Twin(tags={"site": "b43" if i % 2 == 0 else "b44", "floor": i}), "*")
    try:
        q = QuerySpecification(query="SELECT * FROM devices WHERE tags.site = 'b43' AND tags.floor >= 1")
        r = rm.query_iot_hub(q)
        assert r.type == "twin"
        assert [t.device_id for t in r.items] == ["sdk-q2", "sdk-q4"]
        assert r.items[0].tags == {"site": "b43", "floor": 2}
        assert r.continuation_token is None

        # Two at a time, following the continuation token.
        seen, token = [], None
        spec = QuerySpecification(query="SELECT * FROM devices WHERE IS_DEFINED(tags.floor)")
        while True:
            page = rm.query_iot_hub(spec, token, 2)
            assert len(page.items) <= 2
            seen += [t.device_id for t in page.items]
            token = page.continuation_token
            if not token:
                break
        assert seen == ids

        count = rm.query_iot_hub(QuerySpecification(query="SELECT COUNT() AS n FROM devices WHERE tags.site = 'b44'"))
        assert count.type == "raw"
        # The SDK reads every item as a twin; the count is in its extra properties.
        assert count.items[0].additional_properties == {"n": 2}

        with pytest.raises(HttpOperationError) as bad:
            rm.query_iot_hub(QuerySpecification(query="SELECT * FROM devices WHERE tags.site ="))
        assert bad.value.response.status_code == 400
        assert "expected a string" in bad.value.response.text
    finally:
        for d in ids:
            rm.delete_device(d)


def test_service_sdk_lists_a_page_of_devices_and_purges_a_c2d_queue(devhub):
    rm = IoTHubRegistryManager.from_connection_string(devhub.service_cs)
    assert len(rm.get_devices(1)) == 1
    assert len(rm.get_devices()) >= 2

    session = devhub.service_session()
    for i in range(2):
        r = session.post("https://localhost:443/devices/sdk-dev2/messages/deviceBound?api-version=2021-04-12",
                         data=f"stale {i}".encode(), headers={"iothub-messageid": f"stale-{i}"})
        assert r.status_code == 200, r.text
    # The registry manager has no purge of its own: the SDK's REST client does it.
    purged = rm.protocol.cloud_to_device_messages.purge_cloud_to_device_message_queue("sdk-dev2")
    assert purged.total_messages_purged == 2
    assert purged.device_id == "sdk-dev2"

    r = session.post("https://localhost:443/devices/sdk-dev2/messages/deviceBound?api-version=2021-04-12",
                     data=b"fresh", headers={"iothub-messageid": "fresh"})
    assert r.status_code == 200, r.text
    client = device_client(devhub, "sdk-dev2")
    got = []
    client.on_message_received = got.append
    client.connect()
    try:
        assert wait_for(lambda: got)
        time.sleep(0.5)
        assert [m.message_id for m in got] == ["fresh"], "the purged messages must not arrive"
    finally:
        client.shutdown()


def test_service_sdk_bulk_registry_operations(devhub):
    from azure.iot.hub.models import AuthenticationMechanism, ExportImportDevice, SymmetricKey

    rm = IoTHubRegistryManager.from_connection_string(devhub.service_cs)
    key = "YnVsay1rZXktYnVsay1rZXktYnVsay1rZXktMTIzNA=="

    def op(device, mode, **kw):
        return ExportImportDevice(id=device, import_mode=mode, status="enabled", authentication=AuthenticationMechanism(
            type="sas", symmetric_key=SymmetricKey(primary_key=key, secondary_key=key)), **kw)

    r = rm.bulk_create_or_update_devices([op("sdk-bulk0", "create", tags={"fleet": "a"}), op("sdk-bulk1", "create")])
    assert r.is_successful, [e.as_dict() for e in r.errors]
    assert rm.get_device("sdk-bulk0").authentication.symmetric_key.primary_key == key
    assert rm.get_twin("sdk-bulk0").tags == {"fleet": "a"}

    # One that fails (it exists) does not stop the other; the result names it.
    r = rm.bulk_create_or_update_devices([op("sdk-bulk0", "create"), op("sdk-bulk2", "update")])
    assert not r.is_successful
    assert [(e.device_id, e.error_code) for e in r.errors] == [("sdk-bulk0", "DeviceAlreadyExists")]
    rm.get_device("sdk-bulk2")

    r = rm.bulk_create_or_update_devices([op(d, "delete") for d in ["sdk-bulk0", "sdk-bulk1", "sdk-bulk2"]])
    assert r.is_successful
    assert not {"sdk-bulk0", "sdk-bulk1", "sdk-bulk2"} & {d.device_id for d in rm.get_devices()}
