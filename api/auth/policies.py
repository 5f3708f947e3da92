"""The rate-limit policy of every limited action, from the settings (stores/limits.py counts)."""

from __future__ import annotations

from api.auth.stores.limits import Action, Backoff, Policy, Rolling
from api.settings import ApiSettings

WIDE_NETWORK_FACTOR = 4  # an IPv6 /48 gets this many /64s' budgets: sixteen-bit rotation gains x4
DAY_S = 86_400


def rate_limit_policies(settings: ApiSettings) -> dict[Action, Policy]:
    """Return the policy of every rate-limited action, from the settings."""
    per_ip = settings.login_max_failures_per_ip
    return {
        Action.SIGNUP: Rolling(settings.signup_max_per_ip, settings.signup_window_s),
        Action.LOGIN_PAIR: Backoff(
            free=settings.login_free_failures,
            base_s=1.0,
            cap_s=settings.login_backoff_cap_s,
            forget_s=settings.login_account_window_s,
        ),
        Action.LOGIN_IP: Rolling(per_ip, settings.login_window_s),
        Action.LOGIN_IP_WIDE: Rolling(per_ip * WIDE_NETWORK_FACTOR, settings.login_window_s),
        Action.LOGIN_ACCOUNT: Rolling(
            settings.login_max_failures_per_account, settings.login_account_window_s
        ),
        Action.LOGIN_ACCOUNT_KNOWN: Rolling(
            settings.login_max_failures_per_known_network, settings.login_account_window_s
        ),
        Action.VERIFY_RESEND: Rolling(1, settings.accounts.verify_cooldown_s),
        Action.VERIFY_DAILY: Rolling(settings.accounts.verify_max_per_day, DAY_S),
        Action.FORGOT_CLIENT: Rolling(settings.accounts.forgot_max_per_ip, 60),
        Action.FORGOT_ADDRESS: Rolling(settings.accounts.forgot_max_per_address, 3600),
        Action.NEW_DEVICE_MAIL: Rolling(1, 3600),
    }
