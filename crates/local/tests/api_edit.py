"""Edits and reads a page through MediaWiki's action API with mwclient, a real API client.

usage: api_edit.py PORT HOST USER PASSWORD edit|read TITLE [TEXT]

It talks plain HTTP to 127.0.0.1:PORT and names the wiki with the Host header, so the test
needs no DNS. Prints the page text after the edit (or the read).
"""
import sys

import mwclient


def main():
    port, host, user, password, action, title = sys.argv[1:7]
    site = mwclient.Site(
        f"127.0.0.1:{port}",
        path="/w/",
        scheme="http",
        custom_headers={"Host": host},
        clients_useragent="wikikube-tests",
    )
    if action == "edit":
        site.login(user, password)
        page = site.pages[title]
        page.edit(sys.argv[7], summary="wikikube end-to-end test")
    page = site.pages[title]
    print(page.text(cache=False))


if __name__ == "__main__":
    main()
