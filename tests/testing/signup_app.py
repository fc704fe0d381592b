"""A small Starlette app with email sign-up, the kind of app the `mam_inbox` fixture is for.

`POST /signup {"email"}` mails a six-digit code through SMTP; `POST /verify {"email", "code"}`
checks it and mails a welcome; `POST /profile {"email", "name"}` changes the name and must mail
nothing, unless the app is built with `chatty_profile=True` (a bug the tests catch).
"""

from __future__ import annotations

import secrets
from email.message import EmailMessage

import aiosmtplib
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SENDER = "Acme <no-reply@acme.test>"


def signup_app(smtp_host: str, smtp_port: int, *, chatty_profile: bool = False) -> Starlette:
    codes: dict[str, str] = {}

    async def send(to: str, subject: str, text: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = SENDER, to, subject
        message.set_content(text)
        await aiosmtplib.send(message, hostname=smtp_host, port=smtp_port, start_tls=False, use_tls=False)

    async def signup(request: Request) -> JSONResponse:
        email = (await request.json())["email"]
        codes[email] = f"{secrets.randbelow(10**6):06d}"
        await send(email, "Confirm your Acme account", f"Your verification code is {codes[email]}.\n\nAcme")
        return JSONResponse({"status": "check your mail"}, status_code=201)

    async def verify(request: Request) -> JSONResponse:
        body = await request.json()
        if codes.get(body["email"]) != body["code"]:
            return JSONResponse({"error": "wrong code"}, status_code=400)
        await send(body["email"], "Welcome to Acme", "You're in. Start here: https://acme.test/start\n")
        return JSONResponse({"status": "verified"})

    async def profile(request: Request) -> JSONResponse:
        body = await request.json()
        if chatty_profile:
            await send(body["email"], "Your profile changed", f"Your name is now {body['name']}.\n")
        return JSONResponse({"status": "saved"})

    return Starlette(
        routes=[
            Route("/signup", signup, methods=["POST"]),
            Route("/verify", verify, methods=["POST"]),
            Route("/profile", profile, methods=["POST"]),
        ]
    )
