"""Steps several account flows share:

attempts    the limits around every password check (login, re-authentication, change)
issue       starting a session and issuing its tokens
revocation  ending sessions and refusing their access tokens
notices     recording a security event (and mailing it)
events      the jobs flows cause (welcome mail, login audit), enqueued without failing them
"""
