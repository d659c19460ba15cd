"""The optional password in front of every page (``auth`` checks it): a sign-in form that stops
the page until this browser session has signed in, and ``?logout=1`` to sign out."""

from __future__ import annotations

import os
import time

import streamlit as st

from devmode.ui.address import query_flag


def configured_password_hash() -> str | None:
    """The password hash from $DEVMODE_PASSWORD_HASH or the Streamlit secret; None: no gate."""
    from devmode import auth

    return os.environ.get(auth.PASSWORD_HASH_ENV) or secret(auth.PASSWORD_HASH_SECRET)


def require_password() -> None:
    """With a password hash configured, show a sign-in form and stop the page until this
    browser session has signed in; a wrong password costs a second (it slows guessing).
    ``?logout=1`` on any address signs the session out (the wall display has no sidebar)."""
    from devmode import auth

    stored = configured_password_hash()
    if not stored:
        return
    if query_flag("logout"):
        st.session_state.pop("auth_signed_in", None)
        del st.query_params["logout"]
    if st.session_state.get("auth_signed_in"):
        if st.sidebar.button("Sign out", key="auth_sign_out", icon=":material/logout:"):
            del st.session_state["auth_signed_in"]
            st.rerun()
        return
    st.title("devmode")
    st.caption("This devmode is shared by a team. Sign in to continue.")
    with st.form("auth_form"):
        password = st.text_input("Password", type="password", key="auth_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            accepted = auth.verify_password(password, stored)
        except auth.InvalidPasswordHash as e:
            st.error(str(e))
            st.stop()
        if accepted:
            st.session_state["auth_signed_in"] = True
            st.rerun()
        time.sleep(1.0)
        st.error("Wrong password.")
    st.stop()


def secret(name: str) -> str | None:
    """The Streamlit secret ``name``, or None (also when there is no secrets.toml at all, where
    Streamlit raises rather than returning None)."""
    try:
        value = st.secrets.get(name)
    except Exception:
        return None
    return str(value) if value else None
