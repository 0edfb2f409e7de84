"""Edits and reads a page, or uploads a file, through MediaWiki's action API with mwclient, a
real API client.

usage: api_edit.py PORT HOST USER PASSWORD edit|read TITLE [TEXT]
       api_edit.py PORT HOST USER PASSWORD upload FILENAME PNG_PATH
       api_edit.py PORT HOST USER PASSWORD resetpassword USERNAME

`resetpassword` asks, without logging in, for USERNAME's password reset email and prints the
API's status. `upload` first writes a 1000x800 PNG (a colour gradient under noise, made with the
standard library; about 2.2 MiB, above PHP's own 2 MiB upload limit, so the farm's limit is the one
tried) to PNG_PATH, uploads it as File:FILENAME and prints the upload's result.

It talks plain HTTP to 127.0.0.1:PORT and names the wiki with the Host header, so the test
needs no DNS. Prints the page text after the edit (or the read).
"""
import struct
import sys
import zlib

import mwclient


def write_png(path, width=1000, height=800):
    """A truecolour PNG whose pixels differ, so a thumbnail of it is a real scaling, and whose
    noise (the same every time) zlib cannot shrink."""
    state = 0x2545F491
    noise = bytearray(width * height * 3)
    for i in range(len(noise)):
        state ^= (state << 13) & 0xFFFFFFFF
        state ^= state >> 17
        state ^= (state << 5) & 0xFFFFFFFF
        noise[i] = state & 0x3F
    rows = b"".join(
        b"\x00"
        + bytes(
            (c + noise[(y * width + x) * 3 + k]) % 256
            for x in range(width)
            for k, c in enumerate((x * 2 % 256, y * 3 % 256, (x + y) % 256))
        )
        for y in range(height)
    )

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n")
        out.write(chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def main():
    port, host, user, password, action, title = sys.argv[1:7]
    site = mwclient.Site(
        f"127.0.0.1:{port}",
        path="/w/",
        scheme="http",
        custom_headers={"Host": host},
        clients_useragent="wikikube-tests",
    )
    if action == "resetpassword":
        result = site.api("resetpassword", user=title, token=site.get_token("csrf"))
        print(result["resetpassword"]["status"])
        return
    if action == "upload":
        png = sys.argv[7]
        write_png(png)
        site.login(user, password)
        # In one request, as a browser's upload form sends it (mwclient would cut a file over
        # 1 MiB into chunks), so PHP's own upload limit is what is tried.
        site.chunk_size = 8 * 1024 * 1024
        with open(png, "rb") as data:
            result = site.upload(data, filename=title, description="wikikube end-to-end test", ignore=True)
        print(result.get("result"))
        return
    if action == "edit":
        site.login(user, password)
        page = site.pages[title]
        page.edit(sys.argv[7], summary="wikikube end-to-end test")
    page = site.pages[title]
    print(page.text(cache=False))


if __name__ == "__main__":
    main()
