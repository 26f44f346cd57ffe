//! Realistic Dutch names for generated people: prefixes ("van der"), diacritics, and names
//! from the families that make up Dutch classrooms. All invented combinations.

pub const GIVEN: &[&str] = &[
    "Sanne", "Daan", "Emma", "Noah", "Julia", "Sem", "Tess", "Lucas", "Mila", "Finn", "Zoë",
    "Levi", "Saar", "Bram", "Fenna", "Mohammed", "Yara", "Ayoub", "Noor", "Anaïs", "Thijs",
    "Lotte", "Jesse", "Inaya", "Rüya", "Mees", "Liv", "Olivier", "Chloë", "Ilias", "Fleur",
    "Joëlle", "Stijn", "Maud", "Sven", "Elif", "Gijs", "Amira", "Ravi", "Björn", "Femke",
];

/// (prefix, family name)
pub const FAMILY: &[(&str, &str)] = &[
    ("", "Jansen"),
    ("de", "Vries"),
    ("van den", "Berg"),
    ("", "Bakker"),
    ("van", "Dijk"),
    ("", "Visser"),
    ("", "Smit"),
    ("", "Meijer"),
    ("de", "Boer"),
    ("", "Mulder"),
    ("de", "Groot"),
    ("", "Bos"),
    ("", "Vos"),
    ("", "Peters"),
    ("", "Hendriks"),
    ("van der", "Linden"),
    ("", "Dekker"),
    ("van", "Leeuwen"),
    ("", "Brouwer"),
    ("de", "Wit"),
    ("", "Yılmaz"),
    ("", "El Amrani"),
    ("", "Öztürk"),
    ("", "Nguyen"),
    ("", "Şahin"),
    ("van 't", "Hof"),
    ("", "Kuipers"),
    ("ter", "Horst"),
    ("", "Postma"),
    ("in 't", "Veld"),
    ("", "Çelik"),
    ("", "Pérez"),
    ("van der", "Meulen"),
    ("", "Wouters"),
    ("op de", "Beek"),
];
