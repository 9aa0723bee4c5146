"""Drive the RIV agent with ncclient over SSH: get, the RFC 9684 RPCs,
get-data and an error case. Writes each reply to OUT/<name>.xml.

usage: ncclient_session.py HOST PORT USER KEYFILE OUT
"""
import sys
from lxml import etree
from ncclient import manager
from ncclient.xml_ import to_ele

host, port, user, key, out = sys.argv[1:6]
TPM = "urn:ietf:params:xml:ns:yang:ietf-tpm-remote-attestation"
TAA = "urn:ietf:params:xml:ns:yang:ietf-tcg-algs"
NONCE = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # 32 bytes

def save(name, reply):
    with open(f"{out}/{name}.xml", "w") as f:
        f.write(str(reply))

with manager.connect(host=host, port=int(port), username=user, key_filename=key,
                     hostkey_verify=False, allow_agent=False, look_for_keys=False, timeout=30) as m:
    assert ":base:1.1" in " ".join(m.server_capabilities), "no base:1.1"
    save("get", m.get())
    save("get-filtered", m.get(filter=("subtree", f'<rats-support-structures xmlns="{TPM}"><attester-supported-algos/></rats-support-structures>')))
    challenge = f"""<tpm20-challenge-response-attestation xmlns="{TPM}">
      <tpm20-attestation-challenge>
        <nonce-value>{NONCE}</nonce-value>
        <tpm20-pcr-selection><tpm20-hash-algo xmlns:taa="{TAA}">taa:TPM_ALG_SHA256</tpm20-hash-algo>
          <pcr-index>0</pcr-index><pcr-index>1</pcr-index><pcr-index>2</pcr-index><pcr-index>3</pcr-index>
          <pcr-index>4</pcr-index><pcr-index>5</pcr-index><pcr-index>6</pcr-index><pcr-index>7</pcr-index>
          <pcr-index>8</pcr-index><pcr-index>9</pcr-index><pcr-index>10</pcr-index></tpm20-pcr-selection>
      </tpm20-attestation-challenge></tpm20-challenge-response-attestation>"""
    save("challenge", m.dispatch(to_ele(challenge)))
    for t in ["bios", "netequip_boot"]:
        # The identity without a prefix is in the default namespace (RFC
        # 7950 §9.10.3). A prefix declared on <log-type> would not reach the
        # server: lxml drops a declaration whose namespace is already the
        # default when ncclient puts the element into its <rpc>.
        logs = f"""<log-retrieval xmlns="{TPM}"><log-type>{t}</log-type>
          <log-selector><last-index-number>0</last-index-number><log-entry-quantity>5</log-entry-quantity></log-selector>
        </log-retrieval>"""
        save("logs-" + t, m.dispatch(to_ele(logs)))
    bad = challenge.replace("TPM_ALG_SHA256", "TPM_ALG_SM3_256")
    try:
        m.dispatch(to_ele(bad))
        print("no error for an unsupported bank")
        sys.exit(1)
    except Exception as e:  # RPCError
        with open(f"{out}/error.txt", "w") as f:
            f.write(str(e))
print("ok")
