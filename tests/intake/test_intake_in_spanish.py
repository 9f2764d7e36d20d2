"""The intake in Spanish (issue 17): the steps, the service's validation messages and what submit
still needs come in the patient's language; the same posts in English keep their English words; a
message that carries what the patient typed (their legal name) is still escaped."""
from tests.intake.conftest import ABOUT


def test_validation_and_missing_sections_in_spanish(patient_client, driver, clinic):
    patient_client.set_cookie("lang", "es")
    intake_id = driver.start(clinic["hybrid"].id)
    html = driver.page(intake_id, "about").get_data(as_text=True)
    assert "Sobre usted" in html and "Guardar y continuar" in html and "(opcional)" in html

    response = driver.post(intake_id, "about", {**ABOUT, "date_of_birth": "1984-13-09", "state": "ZZ",
                                                "postal_code": "1", "city": ""})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    for words in ("Revise los campos marcados.", "La fecha de nacimiento debe tener el formato 1980-04-30.",
                  "Use el código de estado de dos letras, por ejemplo NY.",
                  "Un código postal tiene la forma 10001 o 10001-1234.", "El campo Ciudad es obligatorio."):
        assert words in html, words

    html = driver.submit(intake_id).get_data(as_text=True)
    assert "Todavía faltan algunos datos antes de que pueda enviar." in html
    assert "Agregue su seguro o elija pagar por su cuenta." in html
    assert "Firme: Consentimiento para el tratamiento" in html


def test_the_same_posts_in_english(patient_client, driver, clinic):
    intake_id = driver.start(clinic["hybrid"].id)
    response = driver.post(intake_id, "about", {**ABOUT, "state": "ZZ", "city": ""})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Use the two-letter state code, like NY." in html and "City is required." in html
    assert "Please check the highlighted fields." in html


def test_a_message_with_the_typed_name_is_escaped(patient_client, driver, clinic):
    patient_client.set_cookie("lang", "es")
    intake_id = driver.start(clinic["hybrid"].id)
    name = "Ana <b>Bold</b> Ruiz"
    assert driver.post(intake_id, "about", {**ABOUT, "legal_name": name}).status_code == 303
    response = driver.post(intake_id, "consents", {"consent_treatment": "Someone Else"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Escriba su nombre legal completo exactamente como en Sobre usted (Ana &lt;b&gt;Bold&lt;/b&gt; Ruiz)." in html
    assert "<b>Bold</b>" not in html
