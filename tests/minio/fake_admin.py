"""A MinIO stand-in for tests/oidc.rs: moto's S3, plus the three admin API calls oscar-wasm
makes (add-user, add-canned-policy, set-user-or-group-policy), each checked as MinIO checks
it, by code that is not oscar-wasm's: the SigV4 header signature recomputed with botocore
from the root keys, and add-user's encrypted body opened with minio-py's madmin decryption.
GET /_fake/state answers the users, policies and mappings it holds.

Usage: fake_admin.py ACCESS_KEY SECRET_KEY; prints "listening on PORT" once serving."""

import hashlib
import io
import json
import sys
import threading

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from minio.crypto import decrypt
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

ACCESS, SECRET = sys.argv[1], sys.argv[2]
REGION = "us-east-1"
PREFIX = "/minio/admin/v3/"

state = {"users": {}, "policies": {}, "user_policy": {}, "refused": 0}
lock = threading.Lock()
s3 = DomainDispatcherApplication(create_backend_app)


class Body(io.BytesIO):
    """What minio-py's decrypt reads: an HTTP response."""

    def release_conn(self):
        pass


def signed_by_root(request: Request, body: bytes) -> bool:
    """MinIO's rule for admin requests: SigV4 in headers by the root keys, the payload hash
    sent and matching."""
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return False
    fields = dict(
        part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 "):].split(",")
    )
    # madmin signs with an empty region unless told one; MinIO takes that or its own.
    credential = fields.get("Credential", "").split("/")
    if len(credential) != 5 or credential[0] != ACCESS or credential[2] not in ("", REGION):
        return False
    if request.headers.get("X-Amz-Content-Sha256") != hashlib.sha256(body).hexdigest():
        return False
    headers = {name: request.headers.get(name, "") for name in fields["SignedHeaders"].split(";")}
    aws = AWSRequest(method=request.method, url=request.url, data=body, headers=headers)
    aws.context["timestamp"] = request.headers.get("X-Amz-Date", "")
    signer = SigV4Auth(Credentials(ACCESS, SECRET), "s3", credential[2])
    canonical = signer.canonical_request(aws)
    expected = signer.signature(signer.string_to_sign(aws, canonical), aws)
    if expected != fields.get("Signature"):
        print(f"refused {request.method} {request.url}: canonical request\n{canonical}", file=sys.stderr, flush=True)
        return False
    return True


def admin(request: Request) -> Response:
    body = request.get_data()
    if not signed_by_root(request, body):
        with lock:
            state["refused"] += 1
        return Response('{"Code":"SignatureDoesNotMatch"}', status=403)
    call = request.path[len(PREFIX):]
    args = request.args
    with lock:
        if call == "add-user" and request.method == "PUT":
            user = json.loads(decrypt(Body(body), SECRET))
            state["users"][args["accessKey"]] = user
        elif call == "add-canned-policy" and request.method == "PUT":
            state["policies"][args["name"]] = json.loads(body)
        elif call == "set-user-or-group-policy" and request.method == "PUT":
            if args.get("isGroup") != "false" or args["policyName"] not in state["policies"]:
                return Response('{"Code":"XMinioAdminNoSuchPolicy"}', status=400)
            state["user_policy"][args["userOrGroup"]] = args["policyName"]
        else:
            return Response('{"Code":"NotImplemented"}', status=501)
    return Response("", status=200)


def app(environ, start_response):
    request = Request(environ)
    if request.path == "/_fake/state":
        with lock:
            response = Response(json.dumps(state), mimetype="application/json")
    elif request.path.startswith(PREFIX):
        response = admin(request)
    else:
        return s3(environ, start_response)
    return response(environ, start_response)


server = make_server("127.0.0.1", 0, app, threaded=True)
print(f"listening on {server.server_port}", flush=True)
server.serve_forever()
