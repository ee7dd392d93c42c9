"""Create (or update) a first function with boto3 against a running Lamina, and invoke it."""

import io
import json
import sys
import zipfile

import boto3

endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:9000"
lam = boto3.client("lambda", endpoint_url=endpoint)

buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as zf:
    zf.writestr("app.py", "def handler(event, context):\n    return {'hello': event.get('name', 'world')}\n")
code = buf.getvalue()
runtime = f"python3.{sys.version_info.minor}"
name = "hello"
try:
    lam.create_function(
        FunctionName=name, Runtime=runtime, Handler="app.handler", Code={"ZipFile": code},
        Role="arn:aws:iam::000000000000:role/lambda-role",
    )
except lam.exceptions.ResourceConflictException:
    lam.update_function_code(FunctionName=name, ZipFile=code)
lam.get_waiter("function_updated_v2").wait(FunctionName=name)
config = lam.get_function_configuration(FunctionName=name)
print(f"function {config['FunctionArn']} is {config['State']} ({config['CodeSize']} bytes)")
answer = lam.invoke(FunctionName=name, Payload=json.dumps({"name": "Lamina"}))
print(f"invoke -> {answer['StatusCode']} {answer['Payload'].read().decode()}")
