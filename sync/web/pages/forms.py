"""Forms of the pages."""

from django import forms


class RegisterForm(forms.Form):
    name = forms.CharField(max_length=63, help_text="letters, digits, '_', '.' or '-'")
    url = forms.CharField(
        label="URL",
        # Holds the password: never shown back, as in the admin.
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
        help_text="postgresql://user:password@host:port/database",
    )
