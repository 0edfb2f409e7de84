"""Logs in and edits a page through MediaWiki's action API with mwclient, a real API client,
then prints the name and value of the wiki's session cookie (`DBNAME_session`): the id under
which MediaWiki keeps the session (`DBNAME:MWSession:ID` in its session store).

usage: redis_session.py PORT HOST USER PASSWORD TITLE TEXT

It talks plain HTTP to 127.0.0.1:PORT and names the wiki with the Host header, so the test
needs no DNS.
"""
import sys

import mwclient


def main():
    port, host, user, password, title, text = sys.argv[1:7]
    site = mwclient.Site(
        f"127.0.0.1:{port}",
        path="/w/",
        scheme="http",
        custom_headers={"Host": host},
        clients_useragent="wikikube-tests",
    )
    site.login(user, password)
    site.pages[title].edit(text, summary="wikikube end-to-end test: a session in Redis")
    # The edit needed the logged-in session: a page edited as Admin proves it held.
    assert site.pages[title].text(cache=False) == text
    for cookie in site.connection.cookies:
        if cookie.name.endswith("_session"):
            print(cookie.name, cookie.value)


if __name__ == "__main__":
    main()
